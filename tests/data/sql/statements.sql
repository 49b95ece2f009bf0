-- Read by `query/src/sql/tests.rs`: each case is a `-- title` line and the statement under it.
-- The compiled spec (or the refusal) of each is in `compiled.md` next to this file;
-- `UPDATE_GOLDEN=1 cargo test --workspace -- sql_golden` writes it again.

-- the issue's example: persons per mission and year
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 0.5, max_records_per_person = 2)
       mission, registration_year, COUNT(DISTINCT person) AS persons
FROM cases
WHERE registration_year BETWEEN 2003 AND 2008 AND gender = 'female'
GROUP BY mission, registration_year

-- cases per mission over six months, Gaussian noise
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (rho = 0.05, delta = 1e-6, mechanism = 'gaussian')
       mission, COUNT(*) AS cases
FROM cases
WHERE registration_month BETWEEN '2005-01' AND '2005-06'
GROUP BY mission

-- a clamped sum in one year
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, SUM(CLAMP(months_to_closure, 0, 12)) AS months
FROM cases WHERE registration_year = 2005 GROUP BY mission

-- a mean with the column's default bounds, half-open year range
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       gender, AVG(shelter_accepted) AS share
FROM cases WHERE registration_year >= 2004 AND registration_year < 2007 GROUP BY gender

-- two quantiles, BigQuery and standard forms
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 2)
       mission,
       PERCENTILE_CONT(CLAMP(months_to_closure, 0, 23), 0.5) AS median,
       PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY CLAMP(months_to_closure, 0, 23)) AS p90
FROM cases WHERE registration_year BETWEEN 2003 AND 2006 GROUP BY mission

-- a histogram of equal-width bins
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, WIDTH_BUCKET(months_to_closure, 0, 23, 4) AS bin, COUNT(*)
FROM cases WHERE registration_year BETWEEN 2003 AND 2006 GROUP BY mission, bin

-- a histogram of explicit edges, by CASE
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       CASE WHEN CLAMP(months_to_closure, 0, 23) < 3 THEN 0
            WHEN CLAMP(months_to_closure, 0, 23) < 6 THEN 3
            WHEN CLAMP(months_to_closure, 0, 23) < 12 THEN 6
            ELSE 12 END AS closure, COUNT(*) AS cases
FROM cases WHERE registration_year BETWEEN 2003 AND 2006 GROUP BY closure

-- an accuracy target instead of a budget
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (half_width_95 = 5)
       mission, COUNT(DISTINCT person)
FROM cases WHERE registration_year BETWEEN 2003 AND 2006 GROUP BY mission

-- the bound chosen from the data, lower-case keywords
select with differential_privacy options (epsilon = 1, max_records_per_person = 'auto')
       mission, count(distinct person)
from cases where registration_year between 2003 and 2006 group by mission

-- lists, nulls and flags
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       citizenship, COUNT(DISTINCT person)
FROM cases
WHERE registration_year BETWEEN 2003 AND 2006
  AND trafficking_status IN ('actual', 'possible')
  AND age_band IS NULL
  AND shelter_accepted = TRUE
GROUP BY citizenship

-- years listed: the period is their span, the list a filter
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       registration_year, COUNT(*)
FROM cases WHERE registration_year IN (2003, 2005) GROUP BY registration_year

-- several conditions on one dimension keep what all allow
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*)
FROM cases
WHERE registration_year BETWEEN 2003 AND 2006 AND mission IN ('KGZ', 'UKR') AND mission = 'KGZ'
GROUP BY mission

-- threshold keys
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1, delta = 1e-6, keys = 'threshold')
       country_of_exploitation, COUNT(DISTINCT person)
FROM cases WHERE registration_year BETWEEN 2003 AND 2006 GROUP BY country_of_exploitation

-- exploitation types, a table alias, positions, ORDER BY and LIMIT after noise
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1, max_exploitation_types_per_record = 3)
       c.mission, c.exploitation_type, COUNT(DISTINCT person) AS persons
FROM cases AS c
WHERE c.registration_year BETWEEN 2003 AND 2006
GROUP BY 1, 2
ORDER BY persons DESC, c.mission
LIMIT 5 OFFSET 1

-- a value outside the domain: compiled, then refused by validation
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*)
FROM cases WHERE registration_year BETWEEN 2003 AND 2006 AND gender = 'feminine'
GROUP BY mission

-- refused: no differential privacy clause
SELECT mission, COUNT(*) FROM cases GROUP BY mission

-- refused: no OPTIONS
SELECT WITH DIFFERENTIAL_PRIVACY mission, COUNT(*) FROM cases GROUP BY mission

-- refused: an unknown option
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilom = 1) mission, COUNT(*) FROM cases GROUP BY mission

-- refused: a budget and an accuracy target
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1, half_width_95 = 3)
       mission, COUNT(*) FROM cases WHERE registration_year = 2005 GROUP BY mission

-- refused: no budget
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (delta = 1e-6)
       mission, COUNT(*) FROM cases WHERE registration_year = 2005 GROUP BY mission

-- refused: a join
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*)
FROM cases JOIN persons ON cases.person_key = persons.person_key
WHERE registration_year = 2005 GROUP BY mission

-- refused: a subquery in FROM
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM (SELECT * FROM cases) AS t GROUP BY mission

-- refused: a subquery in WHERE
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases
WHERE registration_year = 2005 AND gender IN (SELECT gender FROM cases) GROUP BY mission

-- refused: a set operation
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases WHERE registration_year = 2005 GROUP BY mission
UNION SELECT mission, COUNT(*) FROM cases GROUP BY mission

-- refused: a common table expression
WITH t AS (SELECT * FROM cases) SELECT mission FROM t

-- refused: a window function
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) OVER (PARTITION BY mission) FROM cases WHERE registration_year = 2005

-- refused: HAVING on noisy values
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases WHERE registration_year = 2005
GROUP BY mission HAVING COUNT(*) > 10

-- refused: MIN
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, MIN(months_to_closure) FROM cases WHERE registration_year = 2005 GROUP BY mission

-- refused: MAX
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, MAX(months_to_closure) FROM cases WHERE registration_year = 2005 GROUP BY mission

-- refused: a column neither aggregated nor grouped
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, gender, COUNT(*) FROM cases WHERE registration_year = 2005 GROUP BY mission

-- refused: an unknown column, with the nearest name
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       gendr, COUNT(*) FROM cases WHERE registration_year = 2005 GROUP BY gendr

-- refused: an unknown table
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM victims WHERE registration_year = 2005 GROUP BY mission

-- refused: a pseudonymised column in SELECT
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       person_key, COUNT(*) FROM cases WHERE registration_year = 2005 GROUP BY person_key

-- refused: a pseudonymised column in WHERE
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases
WHERE registration_year = 2005 AND record_key = 'a1b2' GROUP BY mission

-- refused: counting record keys
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(DISTINCT record_key) FROM cases WHERE registration_year = 2005 GROUP BY mission

-- refused: counting a dimension
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(gender) FROM cases WHERE registration_year = 2005 GROUP BY mission

-- refused: SELECT *
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) * FROM cases

-- refused: OR
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases
WHERE registration_year = 2005 AND (gender = 'female' OR gender = 'male') GROUP BY mission

-- refused: <>
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases WHERE registration_year = 2005 AND gender <> 'male'
GROUP BY mission

-- refused: NOT IN
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases WHERE registration_year = 2005 AND gender NOT IN ('male')
GROUP BY mission

-- refused: a range of a coded dimension
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases WHERE registration_year = 2005 AND age_band >= '18_24'
GROUP BY mission

-- refused: a value column in WHERE
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases WHERE registration_year = 2005 AND months_to_closure > 3
GROUP BY mission

-- refused: no period
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases WHERE gender = 'female' GROUP BY mission

-- refused: a period with no month
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases
WHERE registration_year > 2008 AND registration_year < 2005 GROUP BY mission

-- refused: two aggregates
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*), COUNT(DISTINCT person) FROM cases WHERE registration_year = 2005
GROUP BY mission

-- refused: grouping by a value column
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       months_to_closure, COUNT(*) FROM cases WHERE registration_year = 2005
GROUP BY months_to_closure

-- refused: a histogram of persons
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       WIDTH_BUCKET(months_to_closure, 0, 23, 4) AS bin, COUNT(DISTINCT person)
FROM cases WHERE registration_year = 2005 GROUP BY bin

-- refused: CASE bins whose THEN is not the bin's lower edge
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       CASE WHEN months_to_closure < 3 THEN 'short' ELSE 'long' END AS b, COUNT(*)
FROM cases WHERE registration_year = 2005 GROUP BY b

-- refused: ORDER BY a column that is not a group key
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases WHERE registration_year = 2005 GROUP BY mission
ORDER BY gender

-- refused: SELECT DISTINCT
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) DISTINCT mission FROM cases

-- refused: not a SELECT
DELETE FROM cases WHERE registration_year = 2005

-- refused: two statements
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases WHERE registration_year = 2005 GROUP BY mission;
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       gender, COUNT(*) FROM cases WHERE registration_year = 2005 GROUP BY gender

-- refused: a syntax error
SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1)
       mission, COUNT(*) FROM cases WHERE registration_year = GROUP BY mission
