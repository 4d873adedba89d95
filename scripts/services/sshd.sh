#!/usr/bin/env bash
# A private sshd on 127.0.0.1 for the remote-execution tests: key-only login, its own
# host key, and a known_hosts entry built from that key (no trust-on-first-use).
#
#   bash scripts/services/sshd.sh start    # prints the settings the tests read
#   bash scripts/services/sshd.sh stop
#
# Environment: WFLP_SSHD_DIR (default /tmp/wflp-sshd), WFLP_SSHD_PORT (default 2222).
# Writes $WFLP_SSHD_DIR/env with WFLP_TEST_SSH_* variables for the tests to source.
# MaxStartups is raised: the core tests and three scheduler suites connect at once in CI.
set -euo pipefail
D="${WFLP_SSHD_DIR:-/tmp/wflp-sshd}"
PORT="${WFLP_SSHD_PORT:-2222}"
SSHD="$(command -v sshd || echo /usr/sbin/sshd)"

# running, and not a zombie left by a kill (nothing may reap it in a container)
alive() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [[ -n "${state}" && "${state}" != Z* ]]
}

start() {
    if [[ ! -x "${SSHD}" ]]; then
        echo "sshd not found; install openssh-server (apt-get install openssh-server)" >&2
        exit 1
    fi
    mkdir -p "${D}"
    chmod 700 "${D}"
    mkdir -p /run/sshd 2>/dev/null || true
    [[ -f "${D}/host_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -f "${D}/host_ed25519"
    [[ -f "${D}/client_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -f "${D}/client_ed25519"
    cp "${D}/client_ed25519.pub" "${D}/authorized_keys"
    chmod 600 "${D}/authorized_keys"
    local sftp="" candidate
    for candidate in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server \
                     /usr/lib/ssh/sftp-server; do
        if [[ -x "${candidate}" ]]; then sftp="${candidate}"; break; fi
    done
    cat > "${D}/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port ${PORT}
HostKey ${D}/host_ed25519
PidFile ${D}/sshd.pid
AuthorizedKeysFile ${D}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp ${sftp}
LogLevel INFO
MaxStartups 100:30:200
CONF
    "${SSHD}" -t -f "${D}/sshd_config"
    if [[ -f "${D}/sshd.pid" ]] && alive "$(cat "${D}/sshd.pid")"; then
        echo "sshd already running (pid $(cat "${D}/sshd.pid"))"
    else
        "${SSHD}" -f "${D}/sshd_config" -E "${D}/sshd.log"
    fi
    echo "[127.0.0.1]:${PORT} $(cut -d' ' -f1,2 "${D}/host_ed25519.pub")" > "${D}/known_hosts"
    for _ in $(seq 1 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then break; fi
        sleep 0.1
    done
    cat > "${D}/env" <<ENV
export WFLP_TEST_SSH_HOST="$(id -un)@127.0.0.1:${PORT}"
export WFLP_TEST_SSH_KEY="${D}/client_ed25519"
export WFLP_TEST_SSH_KNOWN_HOSTS="${D}/known_hosts"
export WFLP_TEST_SSHD_DIR="${D}"
ENV
    echo "sshd pid $(cat "${D}/sshd.pid") on 127.0.0.1:${PORT}; settings in ${D}/env"
}

stop() {
    if [[ -f "${D}/sshd.pid" ]]; then
        kill "$(cat "${D}/sshd.pid")" 2>/dev/null || true
        rm -f "${D}/sshd.pid"
        echo "sshd stopped"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
