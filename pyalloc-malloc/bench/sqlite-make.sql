-- 100,000 generated rows (deterministic: no random()), an index and a derived table; used by
-- .ci/preload.sh (with and without the preload, compared) and the README's figures.
CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, price REAL, note TEXT);
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000)
INSERT INTO item
SELECT x, printf('item-%06d', (x * 7919) % 100003), x % 97, (x * 31 % 10007) / 7.0,
       substr('lorem ipsum dolor sit amet consectetur adipiscing elit', 1 + x % 40, 1 + x % 23)
FROM n;
CREATE INDEX item_grp ON item(grp, price);
CREATE TABLE grp AS SELECT grp AS id, count(*) AS items, sum(price) AS total FROM item GROUP BY grp;
