-- A check result is stored once per (pair, rubric content hash, check, side): checks now run when
-- the pair is captured, and a retried batch write must not duplicate them. Earlier versions
-- could store a pair's checks twice when a judge job was retried; keep the first of each.
DELETE FROM check_results
WHERE id NOT IN (
    SELECT MIN(id) FROM check_results GROUP BY pair_id, rubric_hash, name, side
);
CREATE UNIQUE INDEX check_results_once ON check_results (pair_id, rubric_hash, name, side);
