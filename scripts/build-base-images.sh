#!/usr/bin/env bash
#! Owns Berth's offline base images: builds them from Debian packages and tags them under
#! the local name berth/*, because no container registry is reachable on these machines
#! (see /work/shared/MACHINE-NOTES.md and DESIGN.md, "Running here without a container
#! registry"). Examples and tests build FROM these images; Berth's pull policy ("use the
#! local image if present, else pull") then never needs a registry.
#!
#!   berth/busybox:1      static busybox, /etc/passwd with root and nobody, /tmp 1777
#!   berth/postgres:15    } only with --with-databases (Debian bookworm packages copied
#!   berth/mariadb:10.11  } with their libraries into otherwise empty trees)
#!   berth/redis:7.0      }
#!
#! Idempotent and fast when nothing changed: each image carries the label
#! berth.base-recipe=<sha256 of its recipe and inputs>; an image whose label matches is
#! left alone, a changed recipe (or a new busybox binary) rebuilds it.
#!
#! The images carry NO berth.managed-by label on purpose: Docker copies an image's labels
#! into every image built from it and every container run from it, and that label is how
#! Berth recognises what it owns (and may delete).
#!
#! Usage: scripts/build-base-images.sh [--with-databases] [--force]   (--help for more)
#! Environment: BERTH_DOCKER (docker client, default /usr/bin/docker), BERTH_BASE_ROOTFS
#! (an existing database root filesystem to reuse instead of running mmdebstrap).
set -euo pipefail

# The docker.io client lives in /usr/bin and matches the 20.10 engine; a newer client in
# /usr/local/bin (when present) has no buildx, so its builds fail. BERTH_DOCKER overrides.
DOCKER=${BERTH_DOCKER:-/usr/bin/docker}
RECIPE_LABEL=berth.base-recipe
# Bump to force every image to rebuild when something outside the recipe functions
# changes their meaning.
RECIPE_VERSION=1

WITH_DATABASES=0
FORCE=0

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-base-images.sh: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<'EOF'
Usage: scripts/build-base-images.sh [--with-databases] [--force]

Builds Berth's offline base images from Debian packages (no registry needed):
  berth/busybox:1        always
  berth/postgres:15      with --with-databases
  berth/mariadb:10.11    with --with-databases
  berth/redis:7.0        with --with-databases

  --with-databases  also build the database server images (needs root for mmdebstrap)
  --force           rebuild even when an image with the same recipe exists
  -h, --help        this text

Environment:
  BERTH_DOCKER       docker client to use (default /usr/bin/docker)
  BERTH_BASE_ROOTFS  reuse this root filesystem (made by an earlier mmdebstrap run with
                     the database packages) instead of running mmdebstrap

Prints one line per image: name, size, and whether it was built or already present.
EOF
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --with-databases) WITH_DATABASES=1 ;;
    --force) FORCE=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

[ -x "$DOCKER" ] || die "$DOCKER not found (run scripts/setup-host.sh first)"
"$DOCKER" version >/dev/null 2>&1 || die "the Docker engine does not answer (run scripts/setup-host.sh first)"

# Tests may run this script from several processes at once; one builds, the others wait
# and then find the images present.
LOCK_FILE=${TMPDIR:-/tmp}/berth-build-base-images.lock
exec 9>"$LOCK_FILE"
flock 9

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/berth-base-images.XXXXXX")
# --one-file-system: should mmdebstrap be interrupted with /proc, /sys or /dev still
# mounted in its chroot, never descend into them.
cleanup() { rm -rf --one-file-system -- "$WORK_DIR"; }
trap cleanup EXIT

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

# Installs the named Debian packages that are missing. Only root can; otherwise say what
# to install rather than failing halfway through a build.
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (install as root): ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Prints the recipe hash of an image: the source of the functions that build it plus the
# content of any input files, so editing a recipe or upgrading a package rebuilds.
#   recipe_hash FUNCTION... -- FILE...
recipe_hash() {
  local -a functions=() files=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do functions+=("$1"); shift; done
  [ "$#" -gt 0 ] && shift
  files=("$@")
  {
    printf 'recipe-version %s\n' "$RECIPE_VERSION"
    local f
    for f in "${functions[@]}"; do declare -f "$f"; done
    if [ "${#files[@]}" -gt 0 ]; then sha256sum -- "${files[@]}"; fi
  } | sha256sum | cut -d' ' -f1
}

# The recipe label of an existing image, or nothing when the image does not exist.
image_recipe() {
  "$DOCKER" image inspect --format "{{index .Config.Labels \"$RECIPE_LABEL\"}}" "$1" 2>/dev/null || true
}

image_id() {
  "$DOCKER" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true
}

# True when IMAGE exists with recipe HASH (and --force was not given).
image_is_current() {
  [ "$FORCE" -eq 0 ] && [ "$(image_recipe "$1")" = "$2" ]
}

# After re-tagging, the previous image is untagged. Remove it when nothing uses it; when
# containers or derived images still do, Docker refuses and the old image stays for them.
remove_replaced_image() {
  local old_id=$1 name=$2
  [ -n "$old_id" ] || return 0
  [ "$old_id" = "$(image_id "$name")" ] && return 0
  "$DOCKER" image rm "$old_id" >/dev/null 2>&1 || true
}

# One line per image: name, size, what happened.
report() {
  local name=$1 status=$2 bytes
  bytes=$("$DOCKER" image inspect --format '{{.Size}}' "$name")
  printf '%-22s %7s  %s\n' "$name" "$(awk -v b="$bytes" 'BEGIN { printf "%.1fMB", b / 1000000 }')" "$status"
}

# Imports a root tree as IMAGE with the given `docker import --change` instructions and
# the recipe label. The tree is archived with numeric root ownership so the image does
# not depend on the build user's names.
import_tree() {
  local root=$1 name=$2 hash=$3
  shift 3
  local -a changes=(--change "LABEL $RECIPE_LABEL=$hash")
  local change
  for change in "$@"; do changes+=(--change "$change"); done
  tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
    "$DOCKER" import "${changes[@]}" - "$name" >/dev/null
}

# Builds IMAGE with FUNCTION unless it is current; reports either way.
#   ensure_image NAME HASH FUNCTION
ensure_image() {
  local name=$1 hash=$2 build=$3 old_id started elapsed
  if image_is_current "$name" "$hash"; then
    report "$name" "already present"
    return 0
  fi
  old_id=$(image_id "$name")
  started=$(date +%s.%N)
  "$build" "$name" "$hash"
  elapsed=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  remove_replaced_image "$old_id" "$name"
  report "$name" "built in ${elapsed}s"
}

# ---------------------------------------------------------------------------------------
# berth/busybox:1
# ---------------------------------------------------------------------------------------

BUSYBOX_IMAGE=berth/busybox:1
# busybox-static installs /bin/busybox (it conflicts with the dynamically linked
# `busybox` package, so this is the static binary when the package is installed).
BUSYBOX_BIN=/bin/busybox

# Fills ROOT with a minimal busybox userland. Shared by the database images, whose
# entrypoint scripts need a shell.
populate_busybox_tree() {
  local root=$1 applet
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,root,tmp,var/tmp,home,proc,sys,dev}
  install -m 0755 "$BUSYBOX_BIN" "$root/bin/busybox"
  # The applet links `busybox --install -s` would make if run inside the image. It is not
  # run here because it links to the absolute path of the running binary (read from
  # /proc/self/exe), which would be a host path; --list-full gives the same set.
  while IFS= read -r applet; do
    case "$applet" in bin/busybox | linuxrc) continue ;; esac
    [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done < <("$BUSYBOX_BIN" --list-full)
  chmod 0700 "$root/root"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  # root and nobody (65534, Debian's numbering) so Dockerfiles can say `USER nobody`;
  # `nogroup` too because Debian-style Dockerfiles write `USER nobody:nogroup`.
  printf '%s\n' \
    'root:x:0:0:root:/root:/bin/sh' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
  printf '%s\n' \
    'root:x:0:' \
    'nobody:x:65534:' \
    'nogroup:x:65534:' >"$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
}

build_busybox_image() {
  local name=$1 hash=$2 root="$WORK_DIR/busybox"
  populate_busybox_tree "$root"
  # PATH is set explicitly so RUN steps and `docker exec` see the same search path
  # whatever the engine's default is.
  import_tree "$root" "$name" "$hash" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'CMD ["sh"]'
}

image_busybox() {
  ensure_packages busybox-static
  ensure_image "$BUSYBOX_IMAGE" \
    "$(recipe_hash populate_busybox_tree build_busybox_image import_tree -- "$BUSYBOX_BIN")" \
    build_busybox_image
}

# ---------------------------------------------------------------------------------------
# Database images (only with --with-databases)
#
# One mmdebstrap root filesystem with Debian's server packages is made per run (and only
# when some database image is stale); each image then gets just its server, client tools,
# data files and the shared libraries ldd finds, copied into an otherwise empty busybox
# tree. The entrypoint scripts give the official images' environment-variable behaviour.
#
# No VOLUME is declared, unlike the official images: Docker would create an anonymous,
# unlabelled volume for every container, which Berth's label-based cleanup can never see.
# Berth mounts its own labelled volumes at the data paths instead.
# ---------------------------------------------------------------------------------------

POSTGRES_IMAGE=berth/postgres:15
MARIADB_IMAGE=berth/mariadb:10.11
REDIS_IMAGE=berth/redis:7.0
# The service users get the official images' uid/gid (999) so data directories move
# between these images and the official ones unchanged.
SERVICE_UID=999

# Set by database_rootfs: the bookworm root filesystem the database images copy from.
DB_ROOTFS=""

# Makes the root filesystem once per run. BERTH_BASE_ROOTFS names an existing one to use
# instead (for iterating on the recipes without waiting for mmdebstrap each time).
database_rootfs() {
  [ -n "$DB_ROOTFS" ] && return 0
  if [ -n "${BERTH_BASE_ROOTFS:-}" ]; then
    [ -x "$BERTH_BASE_ROOTFS/usr/lib/postgresql/15/bin/postgres" ] ||
      die "BERTH_BASE_ROOTFS=$BERTH_BASE_ROOTFS does not hold the database packages"
    DB_ROOTFS=$BERTH_BASE_ROOTFS
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "--with-databases must run as root (mmdebstrap --mode=root)"
  ensure_packages mmdebstrap
  log "making a bookworm root filesystem with the database packages (mmdebstrap, ~1 min)"
  # The host's own Debian sources, so the same mirror (or proxy) the host uses is used.
  local -a mirror=()
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror=(/etc/apt/sources.list.d/debian.sources)
  fi
  # create_main_cluster=false: postgresql-common would otherwise initdb a cluster that
  # nothing uses. The packages' maintainer scripts start no services in the chroot.
  # shellcheck disable=SC2016 # $1 is the hook's argument (the chroot), for mmdebstrap's shell
  mmdebstrap --quiet --mode=root --variant=minbase \
    --include=postgresql-15,redis-server,mariadb-server \
    --setup-hook='mkdir -p "$1/etc/postgresql-common" && echo "create_main_cluster = false" >"$1/etc/postgresql-common/createcluster.conf"' \
    bookworm "$WORK_DIR/rootfs" "${mirror[@]}" >&2
  DB_ROOTFS=$WORK_DIR/rootfs
}

# Copies PATH (absolute, as seen inside ROOTFS) to the same path under DEST, following
# symlinks so the copy is a real file of that name. Refuses to write outside DEST: the
# tree holds absolute symlinks (applets -> /bin/busybox) that point into the host.
copy_file_from_rootfs() {
  local rootfs=$1 dest=$2 path=$3 dest_real dir
  dest_real=$(realpath -- "$dest")
  dir=$(realpath -m -- "$dest$(dirname -- "$path")")
  case "$dir/" in
    "$dest_real"/*) ;;
    *) die "refusing to copy $path outside the image tree (resolves to $dir)" ;;
  esac
  mkdir -p -- "$dir"
  rm -f -- "$dir/$(basename -- "$path")"
  cp -L -- "$rootfs$path" "$dir/$(basename -- "$path")"
}

# Copies files and directories from ROOTFS into DEST at the same paths, then every shared
# library their ELF files need, as ldd inside ROOTFS resolves them (the libraries a
# program dlopen()s are not seen by ldd: copy their directories explicitly).
#   copy_from_rootfs ROOTFS DEST PATH...
copy_from_rootfs() {
  local rootfs=$1 dest=$2 path file lib
  shift 2
  local -a elf_files=()
  for path in "$@"; do
    if [ -d "$rootfs$path" ] && ! [ -L "$rootfs$path" ]; then
      mkdir -p -- "$dest$path"
      cp -a -- "$rootfs$path/." "$dest$path/"
      # ELF files start with \x7fELF; one grep over the directory rather than a process
      # per file (zoneinfo alone has ~1800 files).
      while IFS= read -r -d '' file; do
        elf_files+=("${file#"$rootfs"}")
      done < <(find "$rootfs$path" -type f -exec env LC_ALL=C grep -laZ -m1 -P '^\x7fELF' {} +)
    else
      copy_file_from_rootfs "$rootfs" "$dest" "$path"
      if [ "$(head -c 4 -- "$rootfs$path")" = $'\177ELF' ]; then elf_files+=("$path"); fi
    fi
  done
  [ "${#elf_files[@]}" -gt 0 ] || return 0
  local ldd_output
  # ldd exits non-zero when one of the files is static or not a program; its output
  # for the others is still complete.
  ldd_output=$(chroot "$rootfs" ldd "${elf_files[@]}" 2>/dev/null || true)
  [ -n "$ldd_output" ] || die "ldd inside $rootfs printed nothing"
  if grep -q 'not found' <<<"$ldd_output"; then
    die "libraries not found: $(grep 'not found' <<<"$ldd_output" | sort -u | tr -s '\t\n' '  ')"
  fi
  while IFS= read -r lib; do
    copy_file_from_rootfs "$rootfs" "$dest" "$lib"
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3; next }
                $1 ~ /^\// && $2 ~ /^\(0x/ { print $1 }' <<<"$ldd_output" | sort -u)
}

# The part every database image shares: the busybox userland (the entrypoints are busybox
# sh scripts), Debian's merged /usr layout (ldd names libraries under /lib and /usr/lib),
# util-linux setpriv to drop root without building a command string for `su -c` (called
# by absolute path: this busybox prefers its own, smaller setpriv applet), the C.UTF-8
# locale, and a service user SERVICE_NAME with home HOME.
#   populate_database_tree ROOT SERVICE_NAME HOME
populate_database_tree() {
  local root=$1 service=$2 home=$3
  populate_busybox_tree "$root"
  mkdir -p "$root/usr/lib" "$root/usr/lib64" "$root/run" "$root/docker-entrypoint-initdb.d"
  ln -s usr/lib "$root/lib"
  ln -s usr/lib64 "$root/lib64"
  copy_from_rootfs "$DB_ROOTFS" "$root" /usr/bin/setpriv /usr/lib/locale/C.utf8
  printf '%s\n' 'passwd: files' 'group: files' 'shadow: files' 'hosts: files dns' >"$root/etc/nsswitch.conf"
  # Shell /bin/sh, not /bin/false: busybox su ignores -s for /bin/false users, so
  # `docker exec -u SERVICE ... sh` and su would otherwise be unusable.
  printf '%s:x:%s:%s:%s:%s:/bin/sh\n' "$service" "$SERVICE_UID" "$SERVICE_UID" "$service" "$home" >>"$root/etc/passwd"
  printf '%s:x:%s:\n' "$service" "$SERVICE_UID" >>"$root/etc/group"
}

# Shell functions every entrypoint starts with, written into ENTRYPOINT_FILE's head.
write_entrypoint_common() {
  cat >"$1" <<'EOF'
#!/bin/sh
set -eu

# The value of the environment variable NAME (empty when unset), without eval; this
# busybox has no printenv.
env_value() { awk -v name="$1" 'BEGIN { printf "%s", ENVIRON[name] }'; }

# VAR, or the content of the file VAR_FILE names (Docker secrets), else DEFAULT;
# setting both is an error, as in the official images.
file_env() {
  fe_value=$(env_value "$1")
  fe_file=$(env_value "$1_FILE")
  if [ -n "$fe_value" ] && [ -n "$fe_file" ]; then
    echo "error: both $1 and $1_FILE are set (but are exclusive)" >&2
    exit 1
  fi
  if [ -n "$fe_file" ]; then
    cat -- "$fe_file"
  elif [ -n "$fe_value" ]; then
    printf '%s' "$fe_value"
  else
    printf '%s' "${2-}"
  fi
}

log() { printf '%s [Entrypoint]: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*"; }
EOF
}

# Writes the entrypoint: the common head then BODY_FUNCTION's output.
#   install_entrypoint ROOT BODY_FUNCTION
install_entrypoint() {
  local file=$1/usr/local/bin/docker-entrypoint.sh
  write_entrypoint_common "$file"
  "$2" >>"$file"
  chmod 0755 "$file"
}

# Adds instructions `docker import --change` does not accept (STOPSIGNAL) on top of an
# imported image: a one-line Dockerfile, built by the legacy builder without a context.
add_dockerfile_instructions() {
  local name=$1
  shift
  local imported
  imported=$("$DOCKER" image inspect --format '{{.Id}}' "$name")
  { printf 'FROM %s\n' "$imported"; printf '%s\n' "$@"; } |
    DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --tag "$name" - >/dev/null
}

# --- berth/postgres:15 -------------------------------------------------------------------

postgres_entrypoint_body() {
  cat <<'EOF'
# Entrypoint of berth/postgres:15: the official postgres image's behaviour in busybox sh.
# On first start (no $PGDATA/PG_VERSION) it runs initdb for POSTGRES_USER (default
# postgres) with POSTGRES_PASSWORD, lets other hosts in with POSTGRES_HOST_AUTH_METHOD
# (default scram-sha-256), creates POSTGRES_DB (default POSTGRES_USER), runs
# /docker-entrypoint-initdb.d/*.sh, *.sql, *.sql.gz, *.sql.xz, then starts the server.

# `docker run IMAGE -c x=y` means the server with options.
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  # As root: own the data and socket directories, then run again as postgres.
  mkdir -p "$PGDATA" /var/run/postgresql
  find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 0700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec /usr/bin/setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
fi

psql_init() {
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

run_initdb() {
  # POSTGRES_INITDB_ARGS is split into words as in the official image, never globbed.
  set -f
  # shellcheck disable=SC2086
  if [ -n "$POSTGRES_PASSWORD" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" |
      initdb --username="$POSTGRES_USER" --pwfile=/dev/stdin ${POSTGRES_INITDB_WALDIR:+--waldir="$POSTGRES_INITDB_WALDIR"} $POSTGRES_INITDB_ARGS
  else
    initdb --username="$POSTGRES_USER" ${POSTGRES_INITDB_WALDIR:+--waldir="$POSTGRES_INITDB_WALDIR"} $POSTGRES_INITDB_ARGS
  fi
  set +f
}

run_init_scripts() {
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then
          log "running $f"
          "$f"
        else
          log "sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql) log "running $f"; psql_init --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB" ;;
      *.sql.xz) log "running $f"; xzcat "$f" | psql_init --dbname "$POSTGRES_DB" ;;
      *) log "ignoring $f" ;;
    esac
  done
}

if [ "$1" = postgres ] && ! [ -s "$PGDATA/PG_VERSION" ]; then
  POSTGRES_USER=$(file_env POSTGRES_USER postgres)
  POSTGRES_PASSWORD=$(file_env POSTGRES_PASSWORD)
  POSTGRES_DB=$(file_env POSTGRES_DB "$POSTGRES_USER")
  POSTGRES_INITDB_ARGS=$(file_env POSTGRES_INITDB_ARGS)
  POSTGRES_INITDB_WALDIR=${POSTGRES_INITDB_WALDIR:-}
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  case "$auth" in
    '' | *[!a-z0-9-]*) echo "error: POSTGRES_HOST_AUTH_METHOD is not an authentication method: $auth" >&2; exit 1 ;;
  esac
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
    cat >&2 <<'EOM'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.
EOM
    exit 1
  fi
  export POSTGRES_USER POSTGRES_PASSWORD POSTGRES_DB

  run_initdb
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # A server on the Unix socket only, so nobody connects before setup is done.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  if [ "$POSTGRES_DB" != postgres ]; then
    exists=$(psql_init --dbname postgres --tuples-only --no-align --set db="$POSTGRES_DB" <<'EOSQL'
SELECT 1 FROM pg_database WHERE datname = :'db' ;
EOSQL
)
    if [ -z "$exists" ]; then
      psql_init --dbname postgres --set db="$POSTGRES_DB" <<'EOSQL'
CREATE DATABASE :"db" ;
EOSQL
    fi
  fi
  run_init_scripts
  pg_ctl -D "$PGDATA" -m fast -w stop
  log "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
EOF
}

build_postgres_image() {
  local name=$1 hash=$2 root="$WORK_DIR/postgres"
  database_rootfs
  populate_database_tree "$root" postgres /var/lib/postgresql
  # The real programs, not Debian's /usr/bin wrappers (perl scripts picking a cluster).
  # /usr/lib/postgresql/15/lib holds what the server dlopen()s (plpgsql, encodings,
  # extensions); llvmjit would pull in 100 MB of LLVM: without it the server just does
  # not JIT. Time zones: the server uses the system's /usr/share/zoneinfo.
  # `locale` because initdb runs `locale -a` to fill pg_collation.
  copy_from_rootfs "$DB_ROOTFS" "$root" \
    /usr/lib/postgresql/15/bin /usr/share/postgresql/15 /usr/share/zoneinfo /usr/bin/locale
  mkdir -p "$root/usr/lib/postgresql/15/lib"
  local file
  local -a modules=()
  for file in "$DB_ROOTFS"/usr/lib/postgresql/15/lib/*.so; do
    case "${file##*/}" in llvmjit*) continue ;; esac
    modules+=("${file#"$DB_ROOTFS"}")
  done
  copy_from_rootfs "$DB_ROOTFS" "$root" "${modules[@]}"
  mkdir -p "$root/var/lib/postgresql/data" "$root/var/run/postgresql"
  install_entrypoint "$root" postgres_entrypoint_body
  import_tree "$root" "$name" "$hash" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin' \
    'ENV LANG=C.UTF-8' \
    'ENV PG_MAJOR=15' \
    'ENV PGDATA=/var/lib/postgresql/data' \
    'EXPOSE 5432' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' \
    'CMD ["postgres"]'
  # SIGINT is PostgreSQL's "fast shutdown" (the official image's stop signal); SIGTERM
  # would wait for every client to disconnect.
  add_dockerfile_instructions "$name" 'STOPSIGNAL SIGINT'
}

image_postgres() {
  ensure_image "$POSTGRES_IMAGE" "$(database_recipe_hash build_postgres_image postgres_entrypoint_body)" \
    build_postgres_image
}

# --- berth/mariadb:10.11 -----------------------------------------------------------------

mariadb_entrypoint_body() {
  cat <<'EOF'
# Entrypoint of berth/mariadb:10.11: the official mariadb image's behaviour in busybox sh.
# On first start (no /var/lib/mysql/mysql) it needs one of MARIADB_ROOT_PASSWORD,
# MARIADB_ALLOW_EMPTY_ROOT_PASSWORD or MARIADB_RANDOM_ROOT_PASSWORD, creates root@
# MARIADB_ROOT_HOST (default %), MARIADB_DATABASE, and MARIADB_USER/MARIADB_PASSWORD with
# all privileges on that database, runs /docker-entrypoint-initdb.d/*.sh, *.sql,
# *.sql.gz, *.sql.xz, then starts the server. The MYSQL_* names and _FILE forms work too.

DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock

# MARIADB_NAME, else MYSQL_NAME (each also as _FILE), else DEFAULT.
mariadb_env() {
  me_value=$(file_env "MARIADB_$1")
  if [ -z "$me_value" ]; then me_value=$(file_env "MYSQL_$1" "${2-}"); fi
  printf '%s' "$me_value"
}

# Quoting for values placed in SQL text: inside '...' and inside `...`.
sql_string() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"; }
# shellcheck disable=SC2016 # a literal backtick, doubled
sql_ident() { printf '%s' "$1" | sed -e 's/`/``/g'; }

# printf, not echo, for SQL lines: some shells' echo would interpret the backslashes.
# SQL on stdin, through the temporary server's socket (MYSQL_PWD holds the root password
# once it is set: it stays in this process tree, never on a command line).
process_sql() {
  mariadb --protocol=socket --socket="$SOCKET" -uroot -hlocalhost "$@"
}

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- mariadbd "$@"
fi
case "$1" in mariadbd | mysqld) server=1 ;; *) server=0 ;; esac

if [ "$server" = 1 ] && [ "$(id -u)" = 0 ]; then
  # As root: own the data and socket directories, then run again as mysql.
  mkdir -p "$DATADIR" /run/mysqld
  find "$DATADIR" /run/mysqld \! -user mysql -exec chown mysql:mysql '{}' +
  exec /usr/bin/setpriv --reuid=mysql --regid=mysql --init-groups -- "$0" "$@"
fi

if [ "$server" = 1 ] && ! [ -d "$DATADIR/mysql" ]; then
  root_password=$(mariadb_env ROOT_PASSWORD)
  allow_empty=$(file_env MARIADB_ALLOW_EMPTY_ROOT_PASSWORD)
  [ -n "$allow_empty" ] || allow_empty=$(file_env MYSQL_ALLOW_EMPTY_PASSWORD)
  random_root=$(mariadb_env RANDOM_ROOT_PASSWORD)
  root_host=$(mariadb_env ROOT_HOST '%')
  database=$(mariadb_env DATABASE)
  user=$(mariadb_env USER)
  password=$(mariadb_env PASSWORD)
  if [ -z "$root_password" ] && [ -z "$allow_empty" ] && [ -z "$random_root" ]; then
    cat >&2 <<'EOM'
error: Database is uninitialized and password option is not specified
	You need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and MARIADB_RANDOM_ROOT_PASSWORD
EOM
    exit 1
  fi
  if [ "$user" = root ]; then
    echo 'error: MARIADB_USER="root", MARIADB_USER and MARIADB_PASSWORD are for configuring a regular user and cannot be used for the root user' >&2
    exit 1
  fi
  if [ -n "$user" ] && [ -z "$password" ]; then
    echo "error: MARIADB_USER is set but MARIADB_PASSWORD is not" >&2
    exit 1
  fi
  if [ -z "$root_password" ] && [ -n "$random_root" ]; then
    root_password=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)
    log "GENERATED ROOT PASSWORD: $root_password"
  fi

  log "Initializing database files"
  mariadb-install-db --datadir="$DATADIR" --rpm --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve --default-time-zone=SYSTEM --skip-log-bin \
    --expire-logs-days=0 --loose-innodb_buffer_pool_load_at_startup=0 \
    --loose-innodb_buffer_pool_dump_at_shutdown=0 >/dev/null

  # A server on the Unix socket only, so nobody connects before setup is done.
  "$@" --skip-networking --default-time-zone=SYSTEM --socket="$SOCKET" --wsrep_on=OFF \
    --skip-log-bin --expire-logs-days=0 --loose-innodb_buffer_pool_load_at_startup=0 &
  server_pid=$!
  tries=0
  until echo 'SELECT 1' | process_sql --database=mysql >/dev/null 2>&1; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "error: the temporary server exited during initialisation" >&2
      exit 1
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge 300 ]; then
      echo "error: the temporary server did not answer within 30 s" >&2
      exit 1
    fi
    sleep 0.1
  done

  root_pw_sql=$(sql_string "$root_password")
  root_host_sql=$(sql_string "$root_host")
  {
    printf '%s\n' "SET @@SESSION.SQL_LOG_BIN=0;"
    printf '%s\n' "SET @@SESSION.SQL_MODE=REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');"
    printf '%s\n' "DROP USER IF EXISTS root@'127.0.0.1', root@'::1';"
    printf '%s\n' "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\'', @@hostname,'\'');"
    printf '%s\n' "SET PASSWORD FOR 'root'@'localhost' = PASSWORD('$root_pw_sql');"
    if [ "$root_host" != localhost ]; then
      printf '%s\n' "CREATE USER 'root'@'$root_host_sql' IDENTIFIED BY '$root_pw_sql';"
      printf '%s\n' "GRANT ALL ON *.* TO 'root'@'$root_host_sql' WITH GRANT OPTION;"
      printf '%s\n' "GRANT PROXY ON ''@'%' TO 'root'@'$root_host_sql' WITH GRANT OPTION;"
    fi
    printf '%s\n' "SET @@SESSION.SQL_LOG_BIN=1;"
    if [ -n "$database" ]; then
      printf '%s\n' "CREATE DATABASE IF NOT EXISTS \`$(sql_ident "$database")\`;"
    fi
    if [ -n "$user" ]; then
      printf '%s\n' "CREATE USER '$(sql_string "$user")'@'%' IDENTIFIED BY '$(sql_string "$password")';"
      if [ -n "$database" ]; then
        printf '%s\n' "GRANT ALL ON \`$(sql_ident "$database")\`.* TO '$(sql_string "$user")'@'%';"
      fi
    fi
  } | process_sql --database=mysql
  MYSQL_PWD=$root_password
  export MYSQL_PWD

  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then
          log "running $f"
          "$f"
        else
          log "sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql) log "running $f"; process_sql ${database:+--database="$database"} <"$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | process_sql ${database:+--database="$database"} ;;
      *.sql.xz) log "running $f"; xzcat "$f" | process_sql ${database:+--database="$database"} ;;
      *) log "ignoring $f" ;;
    esac
  done

  echo 'SHUTDOWN;' | process_sql
  wait "$server_pid" || true
  unset MYSQL_PWD
  log "MariaDB init process done. Ready for start up."
fi

exec "$@"
EOF
}

build_mariadb_image() {
  local name=$1 hash=$2 root="$WORK_DIR/mariadb"
  database_rootfs
  populate_database_tree "$root" mysql /var/lib/mysql
  # Server, clients (backups, health checks, `connect`) and mariadb-install-db (a sh
  # script) with the helper it runs; /usr/share/mysql holds the system-table SQL, error
  # messages and character sets; plugins are dlopen()ed from /usr/lib/mysql/plugin.
  copy_from_rootfs "$DB_ROOTFS" "$root" \
    /usr/sbin/mariadbd /usr/bin/mariadb /usr/bin/mariadb-dump /usr/bin/mariadb-admin \
    /usr/bin/mariadb-install-db /usr/bin/my_print_defaults /usr/bin/resolveip \
    /usr/share/mysql /usr/lib/mysql/plugin
  ln -s mariadbd "$root/usr/sbin/mysqld"
  ln -s mariadb "$root/usr/bin/mysql"
  ln -s mariadb-dump "$root/usr/bin/mysqldump"
  ln -s mariadb-admin "$root/usr/bin/mysqladmin"
  mkdir -p "$root/etc/mysql/conf.d" "$root/var/lib/mysql" "$root/run/mysqld"
  # Debian's own configuration binds to 127.0.0.1; these are the official image's
  # settings: all interfaces, no DNS lookups of clients, utf8mb4.
  cat >"$root/etc/mysql/my.cnf" <<'EOF'
# berth/mariadb:10.11 -- add settings in /etc/mysql/conf.d/*.cnf
[client-server]
socket = /run/mysqld/mysqld.sock

[mysqld]
datadir = /var/lib/mysql
bind-address = 0.0.0.0
skip-name-resolve
host-cache-size = 0
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci

!includedir /etc/mysql/conf.d/
EOF
  install_entrypoint "$root" mariadb_entrypoint_body
  import_tree "$root" "$name" "$hash" \
    'ENV LANG=C.UTF-8' \
    'EXPOSE 3306' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' \
    'CMD ["mariadbd"]'
}

image_mariadb() {
  ensure_image "$MARIADB_IMAGE" "$(database_recipe_hash build_mariadb_image mariadb_entrypoint_body)" \
    build_mariadb_image
}

# --- berth/redis:7.0 ---------------------------------------------------------------------

redis_entrypoint_body() {
  cat <<'EOF'
# Entrypoint of berth/redis:7.0: the official redis image's behaviour in busybox sh.
# `-options` or a *.conf first argument mean redis-server; the server runs as redis in
# /data, with protected mode off unless a configuration file decides (the official image
# builds Redis with that default: behind published ports every client looks remote).

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis:redis '{}' +
  exec /usr/bin/setpriv --reuid=redis --regid=redis --init-groups -- "$0" "$@"
fi

if [ "$1" = redis-server ]; then
  shift
  if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    set -- redis-server "$@"
  else
    set -- redis-server --protected-mode no "$@"
  fi
fi

# Data files readable by the server's user only, as in the official image.
if [ "$(umask)" = 0022 ]; then umask 0077; fi

exec "$@"
EOF
}

build_redis_image() {
  local name=$1 hash=$2 root="$WORK_DIR/redis"
  database_rootfs
  populate_database_tree "$root" redis /data
  # Debian's redis-server is a symlink to redis-check-rdb that picks its role from the
  # name it is run as: copy_from_rootfs follows the link, giving a real redis-server.
  copy_from_rootfs "$DB_ROOTFS" "$root" /usr/bin/redis-server /usr/bin/redis-cli
  mkdir -p "$root/data"
  install_entrypoint "$root" redis_entrypoint_body
  import_tree "$root" "$name" "$hash" \
    'EXPOSE 6379' \
    'WORKDIR /data' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' \
    'CMD ["redis-server"]'
}

image_redis() {
  ensure_image "$REDIS_IMAGE" "$(database_recipe_hash build_redis_image redis_entrypoint_body)" \
    build_redis_image
}

# The recipe hash of a database image: its own functions, the shared database helpers,
# the busybox tree, the busybox binary and the service uid. Package versions are
# whatever bookworm has when the image is built; --force picks up newer ones.
database_recipe_hash() {
  {
    recipe_hash "$@" database_rootfs copy_file_from_rootfs copy_from_rootfs \
      populate_database_tree write_entrypoint_common install_entrypoint \
      add_dockerfile_instructions populate_busybox_tree import_tree -- "$BUSYBOX_BIN"
    printf 'service-uid %s\n' "$SERVICE_UID"
  } | sha256sum | cut -d' ' -f1
}

# ---------------------------------------------------------------------------------------

image_busybox
if [ "$WITH_DATABASES" -eq 1 ]; then
  image_postgres
  image_mariadb
  image_redis
fi
