#!/bin/bash
# The compose demo's writer: what an application does with worker_spi's
# counters. It waits for pgfleet to create the tables, gives each a total
# row, then inserts small deltas every second; pgfleet folds them into the
# totals, and its log shows them move. Connects like pgfleet, over TLS with
# sslmode=verify-full (PGSSLMODE, PGSSLROOTCERT, PGHOST from compose.yaml).
set -euo pipefail
PGPASSWORD="$(cat /pki/postgres-password)"
export PGPASSWORD
schemas=(schema1 schema2 schema3)

for schema in "${schemas[@]}"; do
    until psql -XqAt -c "SELECT 1 FROM $schema.counted LIMIT 0" >/dev/null 2>&1; do
        echo "writer: waiting for pgfleet to create $schema.counted"
        sleep 2
    done
    psql -Xq -v ON_ERROR_STOP=1 -c "INSERT INTO $schema.counted
        SELECT 'total', 0 WHERE NOT EXISTS (SELECT FROM $schema.counted WHERE type = 'total')"
done
echo "writer: inserting deltas into ${schemas[*]} every second"
while true; do
    psql -Xq -c "INSERT INTO schema1.counted SELECT 'delta', 1 FROM generate_series(1, 3);
                 INSERT INTO schema2.counted VALUES ('delta', 10);
                 INSERT INTO schema3.counted SELECT 'delta', (random() * 100)::int FROM generate_series(1, 20);" ||
        echo "writer: insert failed; trying again"
    sleep 1
done
