-- The tickets whose titles are not folded yet (written before 0003; 0003's comments name the
-- folding function `tickets::domain::fold`, now `bt_contract::search::fold`). The service
-- looks for them at every start (`tickets::fold_titles`): with this index that is a look at
-- an index that is empty once they are folded, not a scan of every ticket. New tickets are
-- written folded and never enter it.
CREATE INDEX tickets_title_unfolded ON tickets (id) WHERE title_folded IS NULL;
