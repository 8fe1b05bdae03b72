-- A stored answer is replayed word for word: keep its body as the text first sent. jsonb
-- reorders keys and drops whitespace, so the replay of an answer rendered with its fields in
-- their documented order would differ from the original. (SQLite stored text already.)
ALTER TABLE idempotent_answers ALTER COLUMN body TYPE text USING body::text;
