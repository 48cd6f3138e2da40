#!/bin/bash
# The compose demo's one-shot `pki` service (run in the postgres:16 image,
# which has openssl, as root): a throwaway CA, a server certificate for the
# host name `db` (the database's service name, so that pgfleet can use
# sslmode=verify-full), and two generated passwords, all in the shared
# volume. Kept when they already exist; `docker compose down -v` removes them.
#
#   ca.crt             the CA (public): pgfleet's and the writer's sslrootcert
#   server.crt/.key    PostgreSQL's certificate and key (owned by postgres, 0600)
#   postgres-password  the superuser's (POSTGRES_PASSWORD_FILE; the writer)
#   pgfleet-password   the `pgfleet` role's: database.password_file, readable
#                      by PostgreSQL's init script and by pgfleet's uid 10001
set -euo pipefail

dir="${PKI_DIR:-/pki}"
cd "$dir"
if [[ -s ca.crt && -s server.crt && -s server.key && -s postgres-password && -s pgfleet-password ]]; then
    echo "pki: certificates and passwords already in $dir"
    exit 0
fi

umask 077
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout ca.key -out ca.crt -days 3650 -subj "/CN=pgfleet demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout server.key -out server.csr -subj "/CN=db"
# rustls (pgfleet's TLS) checks the subjectAltName, never the CN, and refuses
# a CA certificate as the server's own: a proper leaf.
cat > server.ext <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:db
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days 825 -sha256 -extfile server.ext -out server.crt
openssl verify -CAfile ca.crt server.crt
openssl rand -hex 24 > postgres-password
openssl rand -hex 24 > pgfleet-password
rm -f server.csr server.ext ca.srl

# postgres is uid/gid 999 in the official image; pgfleet's image runs as 10001.
chmod 0755 .
chmod 0644 ca.crt server.crt
chown 999:999 server.key postgres-password
chmod 0600 server.key
chmod 0400 postgres-password
chown 999:10001 pgfleet-password
chmod 0440 pgfleet-password
echo "pki: made a CA, a certificate for host db, and passwords in $dir"
