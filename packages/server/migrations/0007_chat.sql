-- Team chat (SPEC §8): the team directory becomes a synced collection, conversations and
-- messages are synced collections scoped to their participants (scope kind `conversation`).

-- Users: a version per change of what devices see (name, role, avatar, active), so a phone
-- holds the directory and can start a conversation offline. A deactivated user is a delete.
ALTER TABLE users ADD COLUMN version bigint NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN avatar_file_id uuid;
ALTER TABLE users ADD COLUMN is_deleted boolean GENERATED ALWAYS AS (NOT is_active) STORED;
-- Existing users take the next versions of their tenant, in creation order.
WITH numbered AS (
  SELECT u.id, u.tenant_id, row_number() OVER (PARTITION BY u.tenant_id ORDER BY u.created_at, u.id) AS n FROM users u
)
UPDATE users u SET version = tv.current_version + numbered.n
  FROM numbered JOIN tenant_versions tv ON tv.tenant_id = numbered.tenant_id
 WHERE u.id = numbered.id;
UPDATE tenant_versions tv
   SET current_version = current_version + (SELECT count(*) FROM users u WHERE u.tenant_id = tv.tenant_id);
CREATE UNIQUE INDEX users_tenant_version ON users (tenant_id, version);

CREATE TABLE conversations (
  id               uuid PRIMARY KEY,
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version          bigint NOT NULL,
  is_deleted       boolean NOT NULL DEFAULT false,
  type             text NOT NULL CHECK (type IN ('private', 'group')),
  title            text,
  -- User ids, as the wire has them; scope_members (kind 'conversation') mirrors them.
  participants     jsonb NOT NULL DEFAULT '[]'::jsonb,
  admins           jsonb NOT NULL DEFAULT '[]'::jsonb,
  created_by       uuid,
  -- The latest message's time (created_at until there is one): the list's order. Not synced
  -- (a device orders by its messages), so a message does not re-version its conversation.
  last_activity_at timestamptz NOT NULL DEFAULT now(),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX conversations_tenant_version ON conversations (tenant_id, version);
-- The conversation list: latest activity first.
CREATE INDEX conversations_activity ON conversations (tenant_id, last_activity_at DESC, id DESC);

CREATE TABLE messages (
  id                uuid PRIMARY KEY,
  tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version           bigint NOT NULL,
  -- The version that created it: the conversation's order (versions commit in order).
  seq               bigint NOT NULL,
  is_deleted        boolean NOT NULL DEFAULT false,
  conversation_id   uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  sender_id         uuid NOT NULL,
  client_message_id text NOT NULL,
  content           text NOT NULL DEFAULT '',
  type              text NOT NULL CHECK (type IN ('text', 'image', 'file')),
  -- [{fileId}]; the wire adds each file's name, type, size and url.
  attachments       jsonb NOT NULL DEFAULT '[]'::jsonb,
  read_by           jsonb NOT NULL DEFAULT '[]'::jsonb,
  delivered_to      jsonb NOT NULL DEFAULT '[]'::jsonb,
  edited_at         timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX messages_tenant_version ON messages (tenant_id, version);
-- A re-sent message (the sender's clientMessageId) is the stored one.
CREATE UNIQUE INDEX messages_client_id ON messages (tenant_id, sender_id, client_message_id);
CREATE INDEX messages_conversation_seq ON messages (tenant_id, conversation_id, seq);
-- Who may read an attached file: the conversations that attach it.
CREATE INDEX messages_attachments ON messages USING gin (attachments jsonb_path_ops);

-- seq is the creating version, set by the database so every writer gets it right.
CREATE FUNCTION messages_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.seq := NEW.version;
  RETURN NEW;
END $$;
CREATE TRIGGER messages_seq BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION messages_seq();

-- What each participant has read and received, as the seq of the latest such message: unread
-- counts are one index range, and a read receipt for "up to" moves one row.
CREATE TABLE chat_marks (
  tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  conversation_id  uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  user_id          uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  read_seq         bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, conversation_id, user_id)
);
