-- Each object's recipients, assignees and shares, also kept on the object's row as text (the
-- same lists as the three tables, which stay the source of truth and the index the read scope
-- probes). A page of objects then reads its markings with its rows instead of a lateral
-- subquery per row, and the read scope probes the recipients and shares tables only for rows
-- that have some. Every change to the three tables refreshes these columns in the same
-- transaction, from the tables, with the object's row locked first (`refresh_markings` in
-- objects.rs, the same expressions as here). NULL: none.
ALTER TABLE objects ADD COLUMN recipients TEXT;
ALTER TABLE objects ADD COLUMN assignees TEXT;
ALTER TABLE objects ADD COLUMN shares TEXT;
UPDATE objects o SET
    recipients = (SELECT string_agg(x.user_id::text, ',' ORDER BY x.user_id) FROM object_recipients x
                  WHERE x.object_id = o.id),
    assignees = (SELECT string_agg(x.user_id::text, ',' ORDER BY x.user_id) FROM object_assignees x
                 WHERE x.object_id = o.id),
    shares = (SELECT string_agg(x.by_org::text || ' ' || x.target || ' ' || coalesce(x.target_org::text, ''), ','
                                ORDER BY x.created_at, x.by_org) FROM object_shares x WHERE x.object_id = o.id)
WHERE o.id IN (SELECT object_id FROM object_recipients UNION SELECT object_id FROM object_assignees
               UNION SELECT object_id FROM object_shares);
