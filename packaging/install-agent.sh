#!/bin/sh
# edgewatch agent: install (or upgrade) it on this host, or remove it. POSIX sh, run as root.
#
#   curl -fsSL https://AGGREGATOR/install.sh | EDGEWATCH_ENROLL_TOKEN=ewe_... sudo --preserve-env=EDGEWATCH_ENROLL_TOKEN sh -s -- --aggregator https://AGGREGATOR
#   sudo sh install-agent.sh --aggregator URL --token TOKEN [--name NAME] [--wheel URL|FILE]
#   sudo sh install-agent.sh --uninstall [--purge]
#
# Install: a venv in /opt/edgewatch/venv (python3 -m venv) with edgewatch[agent] from the wheel the
# aggregator serves (else from the package index); the user edgewatch-agent (systemd-sysusers with
# the line of share/edgewatch/sysusers.d/edgewatch.conf, or useradd); /etc/edgewatch/agent.toml
# (an existing one is kept); enrollment as that user (skipped once enrolled); the unit
# edgewatch-agent.service, daemon-reload, enable --now. A second run changes nothing; with a newer
# release served it upgrades and restarts the agent.
# Uninstall: stop, disable and remove the unit and /opt/edgewatch; keep the config and the state
# (identity, spool) unless --purge. The user stays (its id must not go to another account).
#
# Every system path and command comes from the environment, so a test can run this unprivileged on
# a temp root with stand-ins: EDGEWATCH_ROOT (prefix of every path, default none), EDGEWATCH_PREFIX
# (/opt/edgewatch), EDGEWATCH_UNIT_DIR (/etc/systemd/system), PYTHON (python3), PIP_INSTALL
# (VENV/bin/python -m pip install --quiet), SYSTEMCTL (systemctl), SYSUSERS (systemd-sysusers;
# empty: useradd), USERADD (useradd), GETENT (getent), CHOWN (chown), RUNAS (runuser -u
# edgewatch-agent --). Commands are split on spaces.
set -eu
umask 022

# The aggregator fills these in when it serves this script (GET /install.sh); empty in the source.
SERVED_VERSION=''
SERVED_WHEEL=''

AGENT_USER=edgewatch-agent
UNIT=edgewatch-agent.service
CONFIG_DIR=/etc/edgewatch
STATE_DIR=/var/lib/edgewatch-agent
ROOT=${EDGEWATCH_ROOT:-}
PREFIX=${EDGEWATCH_PREFIX:-/opt/edgewatch}
UNIT_DIR=${EDGEWATCH_UNIT_DIR:-/etc/systemd/system}
PYTHON=${PYTHON:-python3}
SYSTEMCTL=${SYSTEMCTL:-systemctl}
SYSUSERS=${SYSUSERS-systemd-sysusers}
USERADD=${USERADD:-useradd}
GETENT=${GETENT:-getent}
CHOWN=${CHOWN:-chown}
RUNAS=${RUNAS-runuser -u $AGENT_USER --}

VENV=$ROOT$PREFIX/venv
SHARE=$VENV/share/edgewatch
CONFIG=$ROOT$CONFIG_DIR/agent.toml
STATE=$ROOT$STATE_DIR
UNIT_FILE=$ROOT$UNIT_DIR/$UNIT
PIP_INSTALL=${PIP_INSTALL:-$VENV/bin/python -m pip install --quiet --disable-pip-version-check}

say() { printf 'edgewatch install: %s\n' "$*"; }
die() {
	printf 'edgewatch install: %s\n' "$*" >&2
	exit 1
}

usage() {
	cat <<'EOF'
usage: install-agent.sh --aggregator URL --token TOKEN [--name NAME] [--wheel URL|FILE]
       install-agent.sh --uninstall [--purge]

  --aggregator URL  the aggregator, e.g. https://mon.example.com:8480
  --token TOKEN     an enrollment token (web UI: Settings > Agents, or edgewatch admin add-enrollment);
                    not needed once this host is enrolled; better in the environment as
                    EDGEWATCH_ENROLL_TOKEN (an argument is visible to every user in the process list)
  --insecure        allow an http:// aggregator URL (only on a network you trust)
  --name NAME       the agent's name at the aggregator (default: the host name)
  --wheel URL|FILE  install this edgewatch wheel (default: the aggregator's, else the package index)
  --uninstall       stop and remove the agent; keep its config and state
  --purge           with --uninstall: remove /etc/edgewatch/agent.toml and /var/lib/edgewatch-agent too
EOF
}

AGGREGATOR=''
TOKEN=${EDGEWATCH_ENROLL_TOKEN:-}
INSECURE=0
NAME=''
WHEEL=${EDGEWATCH_WHEEL:-}
ACTION=install
PURGE=0
CHANGED=0
RESTART=0

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--aggregator | --token | --name | --wheel)
			[ $# -ge 2 ] || die "$1 needs a value; run with --help"
			case $1 in
			--aggregator) AGGREGATOR=${2%/} ;;
			--token) TOKEN=$2 ;;
			--name) NAME=$2 ;;
			--wheel) WHEEL=$2 ;;
			esac
			shift 2
			;;
		--insecure) INSECURE=1 && shift ;;
		--uninstall) ACTION=uninstall && shift ;;
		--purge) PURGE=1 && shift ;;
		-h | --help) usage && exit 0 ;;
		*) die "unknown argument '$1'; run with --help" ;;
		esac
	done
}

check_args() {
	case $PREFIX$UNIT_DIR in
	*[!A-Za-z0-9_./-]*) die "EDGEWATCH_PREFIX and EDGEWATCH_UNIT_DIR may hold only letters, digits and _ . / -" ;;
	esac
	[ "$ACTION" = install ] || return 0
	[ "$PURGE" = 0 ] || die "--purge goes with --uninstall"
	case $AGGREGATOR in
	https://?*) ;;
	http://?*) [ "$INSECURE" = 1 ] || die "the aggregator's URL is plain http: the package, the signing key this agent pins and its token could be changed on the way; use https, or add --insecure on a network you trust" ;;
	*) die "give the aggregator's URL: --aggregator https://HOST:PORT" ;;
	esac
	case $AGGREGATOR in
	*[[:space:][:cntrl:]\"\'\\\`\$]*) die "--aggregator: the URL has spaces, quotes or other characters a URL cannot hold" ;;
	esac
	case $TOKEN in
	*[!A-Za-z0-9_.-]*) die "--token: that is not an enrollment token (ewe_...); copy it again from the web UI" ;;
	esac
	case $NAME in
	*[!A-Za-z0-9_.-]*) die "--name may hold only letters, digits and _ . -" ;;
	esac
	[ ${#NAME} -le 64 ] || die "--name is longer than 64 characters"
}

check_python() {
	command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON is missing; install Python 3.11 or newer (apt-get install python3 python3-venv)"
	"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "edgewatch needs Python 3.11 or newer, and $PYTHON is older"
	"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || die "Python's venv module is missing; install it (apt-get install python3-venv) and run this again"
}

wheel_version() { basename "$1" | sed -n 's/^edgewatch-\([^-]*\)-.*\.whl$/\1/p'; }

install_package() {
	if [ ! -x "$VENV/bin/python" ]; then
		check_python
		say "creating the venv $PREFIX/venv"
		mkdir -p "$ROOT$PREFIX"
		"$PYTHON" -m venv "$VENV" || die "could not create the venv $VENV"
		CHANGED=1
	fi
	if [ -n "$WHEEL" ]; then
		case $WHEEL in
		http://* | https://*) spec="edgewatch[agent] @ $WHEEL" ;;
		*)
			[ -f "$WHEEL" ] || die "--wheel $WHEEL: there is no such file"
			spec="edgewatch[agent] @ file://$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
			;;
		esac
		want=$(wheel_version "$WHEEL")
	elif [ -n "$SERVED_WHEEL" ]; then
		spec="edgewatch[agent] @ $AGGREGATOR/dist/$SERVED_WHEEL"
		want=$SERVED_VERSION
	elif [ -n "$SERVED_VERSION" ]; then
		spec="edgewatch[agent]==$SERVED_VERSION"
		want=$SERVED_VERSION
	else
		spec="edgewatch[agent]"
		want=''
	fi
	have=$("$VENV/bin/python" -I -c 'from importlib.metadata import version; print(version("edgewatch"))' 2>/dev/null || true)
	if [ -n "$have" ] && { [ -z "$want" ] || [ "$have" = "$want" ]; }; then
		say "edgewatch $have is installed in $PREFIX/venv"
		return 0
	fi
	say "installing $spec into $PREFIX/venv"
	$PIP_INSTALL "$spec" || die "pip could not install $spec (its message is above)"
	[ -z "$have" ] || RESTART=1
	CHANGED=1
	for f in systemd/$UNIT sysusers.d/edgewatch.conf examples/agent.toml; do
		[ -f "$SHARE/$f" ] || die "the installed edgewatch lacks share/edgewatch/$f; install a wheel from make dist (--wheel)"
	done
}

ensure_user() {
	if $GETENT passwd "$AGENT_USER" >/dev/null 2>&1; then
		return 0
	fi
	if [ -n "$SYSUSERS" ] && command -v "${SYSUSERS%% *}" >/dev/null 2>&1; then
		line=$(grep "^u[[:space:]][[:space:]]*${AGENT_USER}[[:space:]]" "$SHARE/sysusers.d/edgewatch.conf") ||
			die "share/edgewatch/sysusers.d/edgewatch.conf has no line for $AGENT_USER"
		say "creating the user $AGENT_USER (systemd-sysusers)"
		$SYSUSERS --inline "$line"
	else
		say "creating the user $AGENT_USER (useradd)"
		$USERADD --system --user-group --home-dir "$STATE_DIR" --no-create-home \
			--shell /usr/sbin/nologin --comment "edgewatch agent" "$AGENT_USER"
	fi
	$GETENT passwd "$AGENT_USER" >/dev/null 2>&1 || die "the user $AGENT_USER could not be created"
	CHANGED=1
}

write_config() {
	if [ ! -d "$STATE" ]; then
		mkdir -p "$STATE"
		chmod 0700 "$STATE"
		CHANGED=1
	fi
	$CHOWN "$AGENT_USER:$AGENT_USER" "$STATE"
	if [ -f "$CONFIG" ]; then
		say "keeping $CONFIG_DIR/agent.toml"
		return 0
	fi
	mkdir -p "$ROOT$CONFIG_DIR"
	tmp=$CONFIG.tmp.$$
	awk -v url="$AGGREGATOR" '/^aggregator = / && !done { print "aggregator = \"" url "\""; done = 1; next } { print }' \
		"$SHARE/examples/agent.toml" >"$tmp"
	"$VENV/bin/edgewatch" agent --config "$tmp" --check-config >/dev/null || {
		rm -f "$tmp"
		die "the agent refused the config it was given (its message is above)"
	}
	chmod 0640 "$tmp"
	$CHOWN "root:$AGENT_USER" "$tmp"
	mv "$tmp" "$CONFIG"
	say "wrote $CONFIG_DIR/agent.toml"
	CHANGED=1
}

enroll() {
	if [ -f "$STATE/identity.json" ]; then
		say "this host is enrolled already ($STATE_DIR/identity.json)"
		return 0
	fi
	[ -n "$TOKEN" ] || die "this host is not enrolled yet: give --token (an enrollment token from the web UI)"
	if [ -n "$RUNAS" ] && ! command -v "${RUNAS%% *}" >/dev/null 2>&1; then
		die "${RUNAS%% *} is missing (Debian: util-linux); it runs the enrollment as $AGENT_USER"
	fi
	set -- enroll "$AGGREGATOR" "$TOKEN" --state-dir "$STATE"
	[ -z "$NAME" ] || set -- "$@" --name "$NAME"
	$RUNAS "$VENV/bin/edgewatch" "$@" ||
		die "enrollment failed (see above); if the token expired or was used up, make a new one"
	CHANGED=1
}

install_unit() {
	mkdir -p "$ROOT$UNIT_DIR"
	tmp=$UNIT_FILE.tmp.$$
	sed "s|/opt/edgewatch/|$PREFIX/|g" "$SHARE/systemd/$UNIT" >"$tmp"
	if [ -f "$UNIT_FILE" ] && cmp -s "$tmp" "$UNIT_FILE"; then
		rm -f "$tmp"
	else
		[ ! -f "$UNIT_FILE" ] || RESTART=1
		chmod 0644 "$tmp"
		mv "$tmp" "$UNIT_FILE"
		say "installed $UNIT_DIR/$UNIT"
		$SYSTEMCTL daemon-reload
		CHANGED=1
	fi
	$SYSTEMCTL enable --now "$UNIT"
	if [ "$RESTART" = 1 ]; then
		$SYSTEMCTL try-restart "$UNIT"
	fi
}

install_agent() {
	install_package
	ensure_user
	write_config
	enroll
	install_unit
	if [ "$CHANGED" = 1 ]; then
		say "done: the agent runs and pushes to $AGGREGATOR (systemctl status $UNIT; journalctl -u $UNIT)"
	else
		say "nothing to change: the agent is installed and enrolled"
	fi
}

uninstall_agent() {
	case $PREFIX in
	/ | /usr | /usr/local | /etc | /var | /opt | /home | /root) die "EDGEWATCH_PREFIX=$PREFIX is not a directory of edgewatch's own; refusing to remove it" ;;
	esac
	if [ -f "$UNIT_FILE" ]; then
		$SYSTEMCTL disable --now "$UNIT" || say "could not stop $UNIT; removing it anyway"
		rm -f "$UNIT_FILE"
		$SYSTEMCTL daemon-reload
		say "removed $UNIT_DIR/$UNIT"
	fi
	if [ -d "$ROOT$PREFIX" ]; then
		rm -rf "$ROOT$PREFIX"
		say "removed $PREFIX"
	fi
	if [ "$PURGE" = 1 ]; then
		rm -f "$CONFIG"
		rmdir "$ROOT$CONFIG_DIR" 2>/dev/null || true # the aggregator's config may live there too
		rm -rf "$STATE"
		say "removed $CONFIG_DIR/agent.toml and $STATE_DIR"
	else
		say "kept $CONFIG_DIR/agent.toml and $STATE_DIR (--purge removes them)"
	fi
	say "the user $AGENT_USER stays"
}

main() {
	parse_args "$@"
	check_args
	if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
		die "run it as root: curl -fsSL URL/install.sh | sudo sh -s -- ..., or sudo sh install-agent.sh ..."
	fi
	if [ "$ACTION" = install ]; then
		install_agent
	else
		uninstall_agent
	fi
}

# Everything is read before it runs, and nothing it starts reads the rest of a piped script.
main "$@" </dev/null
