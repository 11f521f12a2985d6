#!/usr/bin/env bash
#! Stops the Berth server and its edge proxy started by quickstart.sh, by the PID files in
#! the data dir. Application containers are left as they are.
set -euo pipefail
data_dir=${BERTH_DATA_DIR:-/var/lib/berth}
stop_pid_file() {
  local name=$1 file=$2
  if [ -f "$file" ]; then
    pid=$(cat "$file")
    if kill "$pid" 2>/dev/null; then
      echo "stopped $name (pid $pid)"
    fi
    rm -f "$file"
  fi
}
stop_pid_file "berth server" "$data_dir/server.pid"
stop_pid_file "berth proxy" "$data_dir/proxy.pid"
