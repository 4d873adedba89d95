#!/usr/bin/env bash
# A private PostgreSQL on 127.0.0.1 for the `wflp db collect` tests (ase-db-backends): its
# own cluster in $WFLP_POSTGRES_DIR, run as the postgres user, a database and a password
# role for the tests.
#
#   bash scripts/services/postgres.sh start    # writes $WFLP_POSTGRES_DIR/env
#   bash scripts/services/postgres.sh stop
#
# Environment: WFLP_POSTGRES_DIR (default /tmp/wflp-postgres), WFLP_POSTGRES_PORT (5433).
# The env file exports WFLP_TEST_POSTGRES_URL for the tests to read.
set -euo pipefail
D="${WFLP_POSTGRES_DIR:-/tmp/wflp-postgres}"
PORT="${WFLP_POSTGRES_PORT:-5433}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
DB=wflp_test
ROLE=wflp
PASSWORD=wflp-test   # loopback only, a throw-away cluster

as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then "$@"; else runuser -u postgres -- "$@"; fi
}

start() {
    if [[ -z "${BIN}" || ! -x "${BIN}/pg_ctl" ]]; then
        echo "PostgreSQL not found; install it (apt-get install postgresql)" >&2
        exit 1
    fi
    mkdir -p "${D}"
    chown postgres "${D}"
    chmod 700 "${D}"
    if [[ ! -f "${D}/data/PG_VERSION" ]]; then
        as_postgres "${BIN}/initdb" -D "${D}/data" -A trust -U postgres >"${D}/initdb.log"
    fi
    if ! as_postgres "${BIN}/pg_ctl" -D "${D}/data" status >/dev/null 2>&1; then
        as_postgres "${BIN}/pg_ctl" -D "${D}/data" -l "${D}/postgres.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p ${PORT} -k ${D}" start
    fi
    local psql=("${BIN}/psql" -h 127.0.0.1 -p "${PORT}" -U postgres -v ON_ERROR_STOP=1 -qtA)
    if [[ "$(as_postgres "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='${ROLE}'")" != 1 ]]; then
        as_postgres "${psql[@]}" -c "CREATE ROLE ${ROLE} LOGIN PASSWORD '${PASSWORD}'"
    fi
    if [[ "$(as_postgres "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='${DB}'")" != 1 ]]; then
        as_postgres "${psql[@]}" -c "CREATE DATABASE ${DB} OWNER ${ROLE}"
    fi
    cat > "${D}/env" <<ENV
export WFLP_TEST_POSTGRES_URL="postgresql://${ROLE}:${PASSWORD}@127.0.0.1:${PORT}/${DB}"
ENV
    chmod 644 "${D}/env"
    echo "PostgreSQL on 127.0.0.1:${PORT}, database ${DB}; settings in ${D}/env"
}

stop() {
    if [[ -n "${BIN}" && -f "${D}/data/postmaster.pid" ]]; then
        as_postgres "${BIN}/pg_ctl" -D "${D}/data" -m fast -w stop || true
        echo "PostgreSQL stopped"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
