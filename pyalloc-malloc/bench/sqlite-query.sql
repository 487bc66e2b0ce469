-- Queries over sqlite-make.sql's database: aggregates, sorting, LIKE, a join, a long
-- group_concat, and an integrity check.
SELECT count(*), sum(price), min(name), max(name) FROM item;
SELECT grp, count(*), round(avg(price), 4), group_concat(id % 10, '') FROM item GROUP BY grp ORDER BY grp LIMIT 20;
SELECT name, price FROM item WHERE note LIKE '%dolor%' ORDER BY price DESC, id LIMIT 25;
SELECT g.id, g.items, round(g.total, 2), count(i.id) FROM grp g JOIN item i ON i.grp = g.id
  WHERE i.price > 500 GROUP BY g.id ORDER BY g.id;
SELECT length(group_concat(name)) FROM (SELECT name FROM item ORDER BY name);
PRAGMA integrity_check;
