# Sourced by the scripts that run podman: use the project's podman settings
# (scripts/containers.conf) unless the caller chose a CONTAINERS_CONF.
: "${CONTAINERS_CONF:=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf}"
export CONTAINERS_CONF
