-- The title as the listing's search compares it: folded (Unicode lower case) in Rust whenever
-- the title is written (`tickets::domain::fold`, as ticket alerts fold), so that SQLite, whose
-- LOWER folds ASCII only, and PostgreSQL find the same tickets. NULL for tickets written before
-- this migration until the service folds them at start (`tickets::fold_titles`, in batches).
-- No index: the search is a substring match (LIKE '%...%'), which a b-tree index cannot serve.
ALTER TABLE tickets ADD COLUMN title_folded TEXT;
