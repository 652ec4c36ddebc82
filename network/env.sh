# Settings shared by every network script: sourced, never run. POSIX sh.
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
#
# Every value comes from the environment when set, so the same scripts run natively on 127.0.0.1
# (defaults below, binaries from FABRIC_BIN_DIR) and inside the compose stack (docker-compose.yml
# sets the hosts, the listen address and NETWORK_DIR to a shared volume).

NETWORK_SCRIPTS_DIR=${NETWORK_SCRIPTS_DIR:-$(cd "$(dirname "$0")" && pwd)}
REPO_DIR=${REPO_DIR:-$(cd "$NETWORK_SCRIPTS_DIR/.." && pwd)}

# Where everything the network generates or stores goes: crypto material, blocks, node data, logs.
NETWORK_DIR=${NETWORK_DIR:-$REPO_DIR/var/fabric}

# Fabric binaries (peer, orderer, configtxgen, osnadmin, cryptogen). Unset: taken from PATH, as in
# Fabric's images.
if [ -n "${FABRIC_BIN_DIR:-}" ]; then
    PATH="$FABRIC_BIN_DIR:$PATH"
    export PATH
fi

# Fabric's own default core.yaml and orderer.yaml, which the scripts override through environment
# variables. A release or `make` tree keeps them in config/ beside bin/; the images in
# /etc/hyperledger/fabric.
if [ -z "${FABRIC_CONFIG_DIR:-}" ]; then
    for candidate in ${FABRIC_BIN_DIR:+"$FABRIC_BIN_DIR/../config" "$FABRIC_BIN_DIR/config" "$FABRIC_BIN_DIR/../sampleconfig"} \
        /etc/hyperledger/fabric; do
        if [ -f "$candidate/core.yaml" ] && [ -f "$candidate/orderer.yaml" ]; then
            FABRIC_CONFIG_DIR=$(cd "$candidate" && pwd)
            break
        fi
    done
fi

# Addresses: *_HOST is what the others dial, NETWORK_LISTEN_HOST what every node binds.
NETWORK_LISTEN_HOST=${NETWORK_LISTEN_HOST:-127.0.0.1}

# The ordering organisation (OrdererMSP): three etcdraft nodes, each with its client port, its own
# Raft cluster port, its channel participation (admin) port and its operations port.
ORDERER0_HOST=${ORDERER0_HOST:-127.0.0.1}
ORDERER0_PORT=${ORDERER0_PORT:-7050}
ORDERER0_CLUSTER_PORT=${ORDERER0_CLUSTER_PORT:-7060}
ORDERER0_ADMIN_PORT=${ORDERER0_ADMIN_PORT:-7053}
ORDERER0_OPERATIONS_PORT=${ORDERER0_OPERATIONS_PORT:-8443}
ORDERER1_HOST=${ORDERER1_HOST:-127.0.0.1}
ORDERER1_PORT=${ORDERER1_PORT:-8050}
ORDERER1_CLUSTER_PORT=${ORDERER1_CLUSTER_PORT:-8060}
ORDERER1_ADMIN_PORT=${ORDERER1_ADMIN_PORT:-8053}
ORDERER1_OPERATIONS_PORT=${ORDERER1_OPERATIONS_PORT:-8444}
ORDERER2_HOST=${ORDERER2_HOST:-127.0.0.1}
ORDERER2_PORT=${ORDERER2_PORT:-10050}
ORDERER2_CLUSTER_PORT=${ORDERER2_CLUSTER_PORT:-10060}
ORDERER2_ADMIN_PORT=${ORDERER2_ADMIN_PORT:-10053}
ORDERER2_OPERATIONS_PORT=${ORDERER2_OPERATIONS_PORT:-8445}
# The hospital (HospitalMSP): two endorsing peers, so that one of them may be down.
HOSPITAL_PEER0_HOST=${HOSPITAL_PEER0_HOST:-127.0.0.1}
HOSPITAL_PEER0_PORT=${HOSPITAL_PEER0_PORT:-7051}
HOSPITAL_PEER0_CHAINCODE_PORT=${HOSPITAL_PEER0_CHAINCODE_PORT:-7052}
HOSPITAL_PEER0_OPERATIONS_PORT=${HOSPITAL_PEER0_OPERATIONS_PORT:-9444}
HOSPITAL_PEER1_HOST=${HOSPITAL_PEER1_HOST:-127.0.0.1}
HOSPITAL_PEER1_PORT=${HOSPITAL_PEER1_PORT:-8051}
HOSPITAL_PEER1_CHAINCODE_PORT=${HOSPITAL_PEER1_CHAINCODE_PORT:-8052}
HOSPITAL_PEER1_OPERATIONS_PORT=${HOSPITAL_PEER1_OPERATIONS_PORT:-9446}
# The research organisation (ResearchMSP): one peer.
RESEARCH_PEER0_HOST=${RESEARCH_PEER0_HOST:-127.0.0.1}
RESEARCH_PEER0_PORT=${RESEARCH_PEER0_PORT:-9051}
RESEARCH_PEER0_CHAINCODE_PORT=${RESEARCH_PEER0_CHAINCODE_PORT:-9052}
RESEARCH_PEER0_OPERATIONS_PORT=${RESEARCH_PEER0_OPERATIONS_PORT:-9445}
# Each organisation's own chaincode service (python -m chaincode.server), dialled by its own peers only.
HOSPITAL_CHAINCODE_HOST=${HOSPITAL_CHAINCODE_HOST:-127.0.0.1}
HOSPITAL_CHAINCODE_PORT=${HOSPITAL_CHAINCODE_PORT:-9999}
RESEARCH_CHAINCODE_HOST=${RESEARCH_CHAINCODE_HOST:-127.0.0.1}
RESEARCH_CHAINCODE_PORT=${RESEARCH_CHAINCODE_PORT:-9998}
# Mutual TLS between each peer and its organisation's chaincode service: "true" (default) or "false".
CHAINCODE_TLS=${CHAINCODE_TLS:-true}

# The nodes of each organisation (fixed: templates/configtx.yaml names them too).
ORDERING_NODES="orderer0.ordering orderer1.ordering orderer2.ordering"
HOSPITAL_NODES="peer0.hospital peer1.hospital"
RESEARCH_NODES="peer0.research"
PEER_ORGS="hospital research"
# The organisation whose admin commits the chaincode definition (with the others' public TLS CAs).
COMMIT_ORG=${COMMIT_ORG:-hospital}

CHANNEL_NAME=${CHANNEL_NAME:-health}
CHAINCODE_NAME=${CHAINCODE_NAME:-health}
# The chaincode's code: its content hash pins the lifecycle definition (see chaincode/code_hash.py,
# whose manifest-of-sha256sum definition the shell function below repeats for images without Python).
CHAINCODE_DIR=${CHAINCODE_DIR:-$REPO_DIR/chaincode}

# chaincode_code_hash DIR: chaincode.code_hash.code_hash(DIR), with POSIX tools only.
chaincode_code_hash() {
    (cd "$1" && find . -name '*.py' -type f ! -path '*/__pycache__/*' | sed 's|^\./||' | LC_ALL=C sort |
        xargs sha256sum | sha256sum | cut -d ' ' -f 1)
}

# Only the steps that package or serve the chaincode need it (the nodes' containers hold no code).
if [ -z "${CHAINCODE_CODE_HASH:-}" ] && [ -d "$CHAINCODE_DIR" ]; then
    CHAINCODE_CODE_HASH=$(chaincode_code_hash "$CHAINCODE_DIR")
fi
CHAINCODE_CODE_HASH=${CHAINCODE_CODE_HASH:-}
CHAINCODE_SHORT_HASH=$(printf '%s' "$CHAINCODE_CODE_HASH" | cut -c 1-16)
CHAINCODE_VERSION=${CHAINCODE_VERSION:-$CHAINCODE_SHORT_HASH}
CHAINCODE_LABEL=${CHAINCODE_LABEL:-${CHAINCODE_NAME}_$CHAINCODE_SHORT_HASH}
# Empty: the next sequence after the committed one when the code changed, the committed one otherwise.
CHAINCODE_SEQUENCE=${CHAINCODE_SEQUENCE:-}
# Every transaction needs both organisations' endorsement.
ENDORSEMENT_POLICY=${ENDORSEMENT_POLICY:-"AND('HospitalMSP.peer','ResearchMSP.peer')"}
# How long the orderer waits to fill a block: short, so that a submit commits in tens of milliseconds.
BATCH_TIMEOUT=${BATCH_TIMEOUT:-20ms}
# Raft's clock: a leader is elected within ELECTION_TICK ticks (1 s here, not Fabric's 5 s default).
RAFT_TICK_INTERVAL=${RAFT_TICK_INTERVAL:-100ms}
RAFT_ELECTION_TICK=${RAFT_ELECTION_TICK:-10}
# The orderers' metrics: "disabled", or "prometheus" for each orderer's operations endpoint to serve
# /metrics (consensus_etcdraft_is_leader: which one leads the channel's Raft; committed_block_number).
ORDERER_METRICS_PROVIDER=${ORDERER_METRICS_PROVIDER:-disabled}

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
    if [ -x "$REPO_DIR/.venv/bin/python" ]; then PYTHON=$REPO_DIR/.venv/bin/python; else PYTHON=python3; fi
fi

# Each organisation's private folder (its keys, its nodes' data, its packages; mode 0700) and the
# public folder, where each organisation publishes what the others may see (certificates only).
ORGS_DIR=$NETWORK_DIR/orgs
PUBLIC_DIR=$NETWORK_DIR/public
CHANNEL_BLOCK=$PUBLIC_DIR/channel/$CHANNEL_NAME.block
# The TLS CAs of the peers a gateway client may dial (both organisations'), in one PEM bundle.
GATEWAY_TLS_BUNDLE=$PUBLIC_DIR/gateway-tls-cas.pem

log() {
    printf '%s [network] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

fail() {
    log "error: $*"
    exit 1
}

require() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 ||
            fail "$tool not found: set FABRIC_BIN_DIR to the folder with Fabric v2.5's binaries"
    done
}

# org_settings ORG: the organisation's MSP id, its nodes and its folders (ORG_HOME private, ORG_PUBLIC public).
org_settings() {
    case "$1" in
    ordering) ORG_MSP_ID=OrdererMSP ORG_NODES=$ORDERING_NODES ORG_KIND=orderer ;;
    hospital) ORG_MSP_ID=HospitalMSP ORG_NODES=$HOSPITAL_NODES ORG_KIND=peer ;;
    research) ORG_MSP_ID=ResearchMSP ORG_NODES=$RESEARCH_NODES ORG_KIND=peer ;;
    *) fail "unknown organisation '$1' (ordering, hospital or research)" ;;
    esac
    ORG=$1
    ORG_HOME=$ORGS_DIR/$1
    ORG_PUBLIC=$PUBLIC_DIR/$1
    ORG_TLS_CA=$ORG_PUBLIC/tlsca.pem
    ORG_ADMIN_DIR=$ORG_HOME/users/Admin@$1
    ORG_CONFIG_DIR=$ORG_HOME/config
    ORG_GATEWAY_PEER=${ORG_NODES%% *}
    ORG_PREFIX=$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]')
    eval "ORG_CHAINCODE_HOST=\${${ORG_PREFIX}_CHAINCODE_HOST:-}"
    eval "ORG_CHAINCODE_PORT=\${${ORG_PREFIX}_CHAINCODE_PORT:-}"
    PACKAGE_FILE=$ORG_HOME/chaincode/$CHAINCODE_LABEL.tar.gz
    PACKAGE_ID_FILE=${CHAINCODE_PACKAGE_ID_DIR:-$ORG_HOME/chaincode}/$CHAINCODE_LABEL.id
}

# node_settings NODE: the node's organisation (org_settings), addresses and folders. NODE is
# ordererN.ordering or peerN.<org>; its settings are ORDERERN_* or <ORG>_PEERN_* above.
node_settings() {
    NODE=$1
    case "$1" in
    orderer[0-9].ordering) org_settings ordering ;;
    peer[0-9].hospital) org_settings hospital ;;
    peer[0-9].research) org_settings research ;;
    *) fail "unknown node '$1'" ;;
    esac
    short=$(printf '%s' "${1%%.*}" | tr '[:lower:]' '[:upper:]')
    if [ "$ORG_KIND" = orderer ]; then prefix=$short; else prefix=${ORG_PREFIX}_$short; fi
    for setting in HOST PORT CLUSTER_PORT ADMIN_PORT CHAINCODE_PORT OPERATIONS_PORT; do
        eval "NODE_$setting=\${${prefix}_$setting:-}"
    done
    NODE_ADDRESS=$NODE_HOST:$NODE_PORT
    NODE_DIR=$ORG_HOME/${ORG_KIND}s/$1
    NODE_DATA_DIR=$ORG_HOME/data/$1
}

# as_admin ORG [PEER]: point the peer CLI at the organisation's gateway peer (or PEER), as its admin.
as_admin() {
    org_settings "$1"
    node_settings "${2:-$ORG_GATEWAY_PEER}"
    export FABRIC_CFG_PATH="$ORG_CONFIG_DIR"
    export CORE_PEER_LOCALMSPID="$ORG_MSP_ID"
    export CORE_PEER_MSPCONFIGPATH="$ORG_ADMIN_DIR/msp"
    export CORE_PEER_ADDRESS="$NODE_ADDRESS"
    export CORE_PEER_TLS_ENABLED="true"
    export CORE_PEER_TLS_ROOTCERT_FILE="$ORG_TLS_CA"
    export FABRIC_LOGGING_SPEC="${FABRIC_CLI_LOGGING_SPEC:-WARNING}"
}

# render TEMPLATE OUTPUT: copy a template, replacing each @NAME@ with the value of the variable NAME.
render() {
    mkdir -p "$(dirname "$2")"
    script=""
    for name in $(grep -v '^ *#' "$1" | grep -o '@[A-Z0-9_]*@' | tr -d @ | sort -u); do
        eval "value=\${$name?$name is not set}"
        # shellcheck disable=SC2154 # value is assigned by eval
        script="${script}s|@$name@|$value|g;"
    done
    sed -e "$script" "$1" >"$2"
}
