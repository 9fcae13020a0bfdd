-- Files and resumable uploads (SPEC §10): stored files, chunked upload sessions and their
-- chunks, and each tenant's storage in use. Bytes live on disk under UPLOAD_DIR by generated
-- names; these tables say what they are and who may read them.

-- A file: finished (status 'ready'), or a tus upload still arriving ('uploading', until
-- expires_at). The id is the fileId of the API and, for tus, the upload's id.
CREATE TABLE files (
  id            uuid PRIMARY KEY,
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  owner_id      uuid REFERENCES users(id) ON DELETE SET NULL,
  protocol      text NOT NULL CHECK (protocol IN ('chunked', 'tus')),
  status        text NOT NULL CHECK (status IN ('uploading', 'ready')),
  -- Sanitised metadata, never a path.
  filename      text NOT NULL,
  content_type  text NOT NULL,
  size          bigint NOT NULL CHECK (size >= 0),
  sha256        text,
  -- Where the bytes are, relative to UPLOAD_DIR: a generated name.
  storage_name  text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  completed_at  timestamptz,
  expires_at    timestamptz
);
CREATE INDEX files_tenant ON files (tenant_id, id);
CREATE INDEX files_uploading_expiry ON files (expires_at) WHERE status = 'uploading';

-- A chunked upload (POST /api/uploads/init) until it expires; file_id is set by its finalize,
-- so a repeated finalize answers the same file.
CREATE TABLE upload_sessions (
  id            uuid PRIMARY KEY,
  tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id       uuid REFERENCES users(id) ON DELETE CASCADE,
  filename      text NOT NULL,
  content_type  text NOT NULL,
  size          bigint NOT NULL CHECK (size >= 0),
  sha256        text NOT NULL,
  chunk_size    integer NOT NULL CHECK (chunk_size > 0),
  total_chunks  integer NOT NULL CHECK (total_chunks >= 0),
  file_id       uuid,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL
);
CREATE INDEX upload_sessions_tenant ON upload_sessions (tenant_id, id);
CREATE INDEX upload_sessions_expiry ON upload_sessions (expires_at);

-- The chunks of a session that arrived with the checksum they were sent with.
CREATE TABLE upload_chunks (
  tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  upload_id    uuid NOT NULL REFERENCES upload_sessions(id) ON DELETE CASCADE,
  chunk_index  integer NOT NULL CHECK (chunk_index >= 0),
  sha256       text NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (upload_id, chunk_index)
);

-- Bytes a tenant holds or has reserved: finished files plus uploads in progress (reserved at
-- init / tus creation, released when they expire, are terminated or fail). One row per tenant,
-- updated under its row lock, so concurrent uploads on any instance never overshoot the quota.
CREATE TABLE storage_usage (
  tenant_id   uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  used_bytes  bigint NOT NULL DEFAULT 0 CHECK (used_bytes >= 0),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
