# Run (sourced) by the postgres image's entrypoint on the first start, as the
# superuser, in the database POSTGRES_DB: the role pgfleet logs in as, with
# the password the pki service generated, and what it needs to create the
# worker_spi schemas itself (docs/connecting.md, "Privileges the role needs").
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set pw="$(cat /pki/pgfleet-password)" --set db="$POSTGRES_DB" <<'SQL'
CREATE ROLE pgfleet LOGIN PASSWORD :'pw';
GRANT CREATE ON DATABASE :"db" TO pgfleet;
SQL
