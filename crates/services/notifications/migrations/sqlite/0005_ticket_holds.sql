-- Who was given the hold of a ticket alert on which ticket (`ALERT_HOLD_SECONDS`). A ticket
-- back on sale (its order cancelled or expired) is held for the first subscriber in line who
-- has not held it yet, and for nobody once they all have: otherwise the first in line could
-- keep it from everyone by reserving it and letting it go, again and again. A few rows per
-- ticket at most (one per subscriber it was held for), like the tickets replica itself.
CREATE TABLE ticket_holds (
    ticket_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    held_at BIGINT NOT NULL,
    PRIMARY KEY (ticket_id, user_id)
);
