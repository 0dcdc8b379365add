-- Each object's recipients, assignees and shares, also kept on the object's row as text (the
-- same lists as the three tables, which stay the source of truth and the index the read scope
-- probes). A page of objects then reads its markings with its rows instead of three correlated
-- subqueries per row, and the read scope probes the recipients and shares tables only for rows
-- that have some. Every change to the three tables refreshes these columns in the same
-- transaction, from the tables (`refresh_markings` in objects.rs, the same expressions as
-- here). NULL: none.
ALTER TABLE objects ADD COLUMN recipients TEXT;
ALTER TABLE objects ADD COLUMN assignees TEXT;
ALTER TABLE objects ADD COLUMN shares TEXT;
UPDATE objects SET
    recipients = (SELECT group_concat(hex(x.user_id), ',' ORDER BY x.user_id) FROM object_recipients x
                  WHERE x.object_id = objects.id),
    assignees = (SELECT group_concat(hex(x.user_id), ',' ORDER BY x.user_id) FROM object_assignees x
                 WHERE x.object_id = objects.id),
    shares = (SELECT group_concat(hex(x.by_org) || ' ' || x.target || ' ' || coalesce(hex(x.target_org), ''), ','
                                  ORDER BY x.created_at, x.by_org) FROM object_shares x WHERE x.object_id = objects.id)
WHERE id IN (SELECT object_id FROM object_recipients UNION SELECT object_id FROM object_assignees
             UNION SELECT object_id FROM object_shares);
