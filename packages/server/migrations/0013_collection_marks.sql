-- Which collections a tenant has written, and up to which version (docs/sync-protocol.md
-- "Collections left out of a pull"). Every write marks each collection it gave a version with
-- its last version, in the same UPDATE that advances current_version, so a mark is at or above
-- every version of its collection (records and scope events) and committed with them. A pull
-- from a checkpoint at or above marks_from runs the branches of the collections marked above
-- it only. The marks are complete for versions above marks_from: an existing tenant's history
-- was written before marks, so its pulls from older checkpoints read every collection.
ALTER TABLE tenant_versions
  ADD COLUMN collection_marks jsonb NOT NULL DEFAULT '{}'::jsonb,
  ADD COLUMN marks_from bigint NOT NULL DEFAULT 0;

UPDATE tenant_versions SET marks_from = current_version;
