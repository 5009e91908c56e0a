-- outreach schema: who decided on a story. `approved_by` / `rejected_by` hold who
-- approved or rejected it: 'cli', or the address of the desk user who did (the web desk).
-- Erasing that person rewrites them like any other text that names them.

ALTER TABLE stories ADD COLUMN approved_by TEXT;
ALTER TABLE stories ADD COLUMN rejected_by TEXT;
