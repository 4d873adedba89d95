#!/usr/bin/env bash
# A real single-node Grid Engine (Debian 12's Son of Grid Engine 8.1.9: qmaster, execd and
# the client commands) for the wflp-sge tests. Its daemons bind 0.0.0.0 and have no option
# to bind loopback only, so they run inside a network namespace "sge" that has nothing but
# its own loopback: every client command needs the prefix `ip netns exec sge`
# (a system's command_prefix = ["ip", "netns", "exec", "sge"]). Root, no systemd.
#
#   bash scripts/services/sge.sh preseed   # answers for the packages' questions (debconf)
#   bash scripts/services/sge.sh install   # preseed + apt-get install the packages
#   bash scripts/services/sge.sh start     # namespace, qmaster, configuration, execd
#   bash scripts/services/sge.sh status    # exit 0 when the queue takes jobs
#   bash scripts/services/sge.sh stop      # deletes jobs, stops the daemons, the namespace
#
# The configuration it makes: root may run jobs (min_uid 0), the scheduler runs every
# second, accounting is written at once (qacct sees a job as soon as it ended), finished
# jobs stay listed by `qstat -s z` (the last 100), a parallel environment "smp" and a
# queue all.q with one slot per CPU whose shell is /bin/sh.
set -euo pipefail

export SGE_ROOT="${SGE_ROOT:-/var/lib/gridengine}" SGE_CELL="${SGE_CELL:-default}"
NS="${WFLP_SGE_NETNS:-sge}"
N=(ip netns exec "${NS}")
PACKAGES=(gridengine-master gridengine-exec gridengine-client)
H="$(hostname)"
SPOOL=/var/spool/gridengine

wait_for() {  # wait_for SECONDS COMMAND...: poll every 0.2 s
    local n=$(( $1 * 5 ))
    shift
    for _ in $(seq 1 "${n}"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    return 1
}

alive() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [[ -n "${state}" && "${state}" != Z* ]]
}

preseed() {
    local pkg
    for pkg in gridengine-common gridengine-client gridengine-master; do
        debconf-set-selections <<SEL
${pkg} shared/gridengineconfig boolean true
${pkg} shared/gridenginecell string ${SGE_CELL}
${pkg} shared/gridenginemaster string ${H}
SEL
    done
}

install() {
    preseed
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
}

qconf_() { "${N[@]}" env SGE_ROOT="${SGE_ROOT}" SGE_CELL="${SGE_CELL}" qconf "$@"; }

# edit SED_ARGS QCONF_OPTION...: qconf opens $EDITOR on the object; a script running sed is it
edit() {
    local ed
    ed="$(mktemp)"
    printf '#!/bin/sh\nsed -i %s "$1"\n' "$1" > "${ed}"
    chmod +x "${ed}"
    EDITOR="${ed}" qconf_ "${@:2}"
    rm -f "${ed}"
}

qmaster_pid() { cat "${SPOOL}/qmaster/qmaster.pid" 2>/dev/null || true; }
execd_pid() { cat "${SPOOL}/execd/${H}/execd.pid" 2>/dev/null || true; }

start() {
    if [[ ! -x /usr/sbin/sge_qmaster || ! -x /usr/sbin/sge_execd ]]; then
        echo "Grid Engine not found; run: bash $0 install (${PACKAGES[*]})" >&2
        exit 1
    fi
    if [[ ! -d "${SGE_ROOT}/${SGE_CELL}/common" ]]; then
        echo "the Grid Engine cell ${SGE_ROOT}/${SGE_CELL} is not configured (the packages" \
             "were installed without answers): run bash $0 preseed, then" \
             "dpkg-reconfigure gridengine-master" >&2
        exit 1
    fi
    ip netns list | grep -qw "${NS}" || ip netns add "${NS}"
    "${N[@]}" ip link set lo up
    # /etc/netns/NS/hosts is bind-mounted over /etc/hosts inside the namespace:
    # 127.0.0.1 must resolve to (and from) this host's name there
    mkdir -p "/etc/netns/${NS}"
    printf '127.0.0.1 %s localhost\n' "${H}" > "/etc/netns/${NS}/hosts"
    echo "${H}" > "${SGE_ROOT}/${SGE_CELL}/common/act_qmaster"
    mkdir -p /var/run/gridengine "${SPOOL}/execd"
    chown sgeadmin:sgeadmin /var/run/gridengine "${SPOOL}/execd"

    local pid
    pid="$(qmaster_pid)"
    if [[ -z "${pid}" ]] || ! alive "${pid}"; then
        "${N[@]}" env SGE_ROOT="${SGE_ROOT}" SGE_CELL="${SGE_CELL}" /usr/sbin/sge_qmaster
    fi
    wait_for 20 qconf_ -sh || { echo "sge_qmaster did not start" >&2; exit 1; }

    # root jobs (default min_uid/min_gid 1000); accounting flushed at once, for qacct
    edit "-e 's/^min_uid.*/min_uid 0/' -e 's/^min_gid.*/min_gid 0/' \
          -e 's/flush_time=00:00:15/flush_time=00:00:01 accounting_flush_time=00:00:00/' \
          -e 's/^finished_jobs.*/finished_jobs 100/'" -mconf global
    edit "-e 's/^schedule_interval.*/schedule_interval 0:0:1/' \
          -e 's/^flush_submit_sec.*/flush_submit_sec 1/' \
          -e 's/^flush_finish_sec.*/flush_finish_sec 1/'" -msconf
    qconf_ -ss | grep -qx "${H}" || qconf_ -as "${H}"
    if ! qconf_ -sel 2>/dev/null | grep -qx "${H}"; then
        edit "-e 's/^hostname.*/hostname ${H}/'" -ae
    fi
    if ! qconf_ -shgrpl 2>/dev/null | grep -qx '@allhosts'; then
        edit "-e 's/^group_name.*/group_name @allhosts/' -e 's/^hostlist.*/hostlist ${H}/'" \
            -ahgrp @allhosts
    fi
    if ! qconf_ -spl 2>/dev/null | grep -qx smp; then
        edit "-e 's/^pe_name.*/pe_name smp/' -e 's/^slots.*/slots 999/' \
              -e 's/^allocation_rule.*/allocation_rule \$pe_slots/'" -ap smp
    fi
    local queue="-e 's/^hostlist.*/hostlist @allhosts/' -e 's/^pe_list.*/pe_list smp/' \
        -e 's/^slots.*/slots $(nproc)/' -e 's/^load_thresholds.*/load_thresholds NONE/' \
        -e 's#^shell .*#shell /bin/sh#'"
    if qconf_ -sql 2>/dev/null | grep -qx all.q; then
        edit "-e 's/^qname.*/qname all.q/' ${queue}" -mq all.q
    else
        edit "-e 's/^qname.*/qname all.q/' ${queue}" -aq all.q
    fi

    pid="$(execd_pid)"
    if [[ -z "${pid}" ]] || ! alive "${pid}"; then
        "${N[@]}" env SGE_ROOT="${SGE_ROOT}" SGE_CELL="${SGE_CELL}" /usr/sbin/sge_execd
    fi
    if ! wait_for 30 queue_ready; then
        echo "the queue all.q@${H} did not come up:" >&2
        "${N[@]}" qstat -f >&2 || true
        exit 1
    fi
    "${N[@]}" qstat -f
    echo "Grid Engine is up in network namespace ${NS} (commands: ip netns exec ${NS} qsub ...)"
}

queue_ready() {
    # the queue instance shows its load (lx-amd64) and no state letters (u, E, d ...)
    "${N[@]}" qstat -f 2>/dev/null | grep -q "all.q@${H} .*lx-amd64 *$"
}

status() {
    ip netns list | grep -qw "${NS}" && queue_ready
}

stop() {
    if ip netns list | grep -qw "${NS}"; then
        "${N[@]}" qdel -f -u '*' >/dev/null 2>&1 || true
    fi
    local pf pid
    for pf in "${SPOOL}/execd/${H}/execd.pid" "${SPOOL}/qmaster/qmaster.pid"; do
        if [[ -s "${pf}" ]]; then
            pid="$(cat "${pf}")"
            if kill "${pid}" 2>/dev/null; then
                echo "stopped $(basename "${pf}" .pid) (${pid})"
                wait_for 20 sh -c "! kill -0 ${pid}" || kill -9 "${pid}" 2>/dev/null || true
            fi
        fi
    done
    ip netns del "${NS}" 2>/dev/null || true
}

case "${1:-}" in
    preseed) preseed ;;
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 preseed|install|start|stop|status" >&2; exit 2 ;;
esac
