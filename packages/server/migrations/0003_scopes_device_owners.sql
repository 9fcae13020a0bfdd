-- Scopes become a concept of the sync core: one membership table for every kind of scope
-- (spaces now, conversations next), replacing space_members. And device ids get an owner.

-- Who belongs to which scope, with a role. The pull's scope filter and the gateway's rooms
-- read it by user; the scope's writers replace it by scope.
CREATE TABLE scope_members (
  tenant_id  uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  kind       text NOT NULL,
  scope_id   uuid NOT NULL,
  user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role       text NOT NULL,
  PRIMARY KEY (tenant_id, kind, scope_id, user_id)
);
CREATE INDEX scope_members_user ON scope_members (tenant_id, user_id, kind, scope_id);

INSERT INTO scope_members (tenant_id, kind, scope_id, user_id, role)
  SELECT tenant_id, 'space', space_id, user_id, role FROM space_members;
DROP TABLE space_members;

-- A device id belongs to the user who first synced with it in the tenant (SPEC §4 "Client
-- ids"): local ids, receipts and the checkpoint of a device are that user's alone.
CREATE TABLE device_owners (
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  device_id   text NOT NULL,
  user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  claimed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, device_id)
);
INSERT INTO device_owners (tenant_id, device_id, user_id)
  SELECT tenant_id, device_id, user_id FROM devices WHERE user_id IS NOT NULL;
