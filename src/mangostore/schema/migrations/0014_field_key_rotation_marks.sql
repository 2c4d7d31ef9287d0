-- 0014_field_key_rotation_marks: which rotation made each field key.
--
-- A rotation gives users their new keys in batches, one write transaction (and one
-- keyring write) per batch, so that other writers carry on between batches. A
-- rotation that was interrupted is resumed by giving new keys to the users whose
-- primary key was not made by it; field_keys.rotation_id says which those are,
-- whatever the clocks of the devices that made the keys. NULL: a key made outside
-- any rotation (a user's first key, or one that reached its use limit).

-- migrate:up
ALTER TABLE field_keys ADD COLUMN rotation_id TEXT;

-- migrate:down
ALTER TABLE field_keys DROP COLUMN rotation_id;
