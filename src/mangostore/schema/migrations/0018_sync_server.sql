-- 0018_sync_server: what a device keeps about the relay it syncs through.
--
-- sync_device.relay is the relay this database syncs with (a sync server's URL or a
-- relay folder), saved by `mangostore sync join` so that later commands need not name
-- it. sync_device.snapshot_cursor is the cursor of the latest snapshot this device
-- knows the relay keeps (it uploaded it or found it there), so it uploads a new one
-- only when the vault has moved on far enough (docs/sync-server.md).

-- migrate:up
ALTER TABLE sync_device ADD COLUMN relay TEXT;
ALTER TABLE sync_device ADD COLUMN snapshot_cursor INTEGER NOT NULL DEFAULT 0;

-- migrate:down
ALTER TABLE sync_device DROP COLUMN snapshot_cursor;
ALTER TABLE sync_device DROP COLUMN relay;
