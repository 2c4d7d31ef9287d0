-- 0006_access_indexes: indexes for the repository layer's lookups, and one active
-- voice profile per user.
--
-- The design indexes user_id on some tables only; find_by_user() and the
-- foreign-key checks SQLite runs on delete would otherwise scan these tables.

-- migrate:up
CREATE UNIQUE INDEX idx_voice_profiles_one_active ON voice_profiles(user_id) WHERE is_active = 1;
CREATE INDEX idx_voice_profiles_user_id ON voice_profiles(user_id);
CREATE INDEX idx_ai_conversations_user_id ON ai_conversations(user_id);
CREATE INDEX idx_ai_memory_user_key ON ai_memory(user_id, key_name);
CREATE INDEX idx_permissions_user_resource ON permissions(user_id, resource_type, resource_id);
CREATE INDEX idx_user_sessions_user_id ON user_sessions(user_id);
CREATE INDEX idx_notification_actions_notification_id ON notification_actions(notification_id);
CREATE INDEX idx_kg_observations_entity_id ON kg_observations(entity_id);
CREATE INDEX idx_kg_embeddings_entity_id ON kg_embeddings(entity_id);

-- migrate:down
DROP INDEX idx_kg_embeddings_entity_id;
DROP INDEX idx_kg_observations_entity_id;
DROP INDEX idx_notification_actions_notification_id;
DROP INDEX idx_user_sessions_user_id;
DROP INDEX idx_permissions_user_resource;
DROP INDEX idx_ai_memory_user_key;
DROP INDEX idx_ai_conversations_user_id;
DROP INDEX idx_voice_profiles_user_id;
DROP INDEX idx_voice_profiles_one_active;
