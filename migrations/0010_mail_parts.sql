-- outreach schema: what the desk shows of a mail beyond its text.
-- `body_html` holds the mail's own HTML body as it came (at most 256 KiB; NULL for a
-- mail written as text only, and for mail that joins no conversation: automatic mail,
-- bounces, mail for review). The desk shows it only after ammonia has sanitized it.
-- `attachments` is the JSON list of its attachments' names, sizes and types
-- (`[{"name": ..., "size": ..., "content_type": ...}]`); the files stay in the mailbox.
-- Retention clears `body_html` with `body_text`; erasing a person clears both columns
-- of the mail they sent.

ALTER TABLE messages ADD COLUMN body_html TEXT;
ALTER TABLE messages ADD COLUMN attachments TEXT NOT NULL DEFAULT '[]';
