-- Events by organisation and time span instead of by exact time. An index on (org_id, ts) takes
-- each event at the place of its time: events that arrive out of time order (a file of last month
-- uploaded, a replay, shippers catching up) are written all over the index, and every transaction
-- then rewrites thousands of index pages (measured with the corpus sent 100 times over: 35.7k
-- events/s with it, 62.7k/s without it; BENCHMARKS.md, "Events indexed by time span"). Keyed by
-- the span of 2^28 µs (about 4.5 minutes) the time falls in, an event joins the end of its span's
-- run (entries of one key are kept in id order), so a batch touches about one index page per span
-- it covers. Queries bound the span (`ts / 268435456`, written exactly so, which is how the
-- planner matches the index) and then the exact time; `nigehban_store::TIME_SPAN_MICROS` is this
-- number. PostgreSQL's index also carries the id (SQLite's keeps the rowid at the end of every
-- index), so a span's entries are in id order and pages walk it without sorting.
DROP INDEX events_org_ts;
CREATE INDEX events_org_span ON events(org_id, (ts / 268435456), id);
