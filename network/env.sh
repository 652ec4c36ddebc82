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
ORDERER_HOST=${ORDERER_HOST:-127.0.0.1}
ORDERER_PORT=${ORDERER_PORT:-7050}
ORDERER_ADMIN_PORT=${ORDERER_ADMIN_PORT:-7053}
ORDERER_OPERATIONS_PORT=${ORDERER_OPERATIONS_PORT:-8443}
ORDERER_CLUSTER_PORT=${ORDERER_CLUSTER_PORT:-$ORDERER_PORT}
HOSPITAL_PEER_HOST=${HOSPITAL_PEER_HOST:-127.0.0.1}
HOSPITAL_PEER_PORT=${HOSPITAL_PEER_PORT:-7051}
HOSPITAL_PEER_CHAINCODE_PORT=${HOSPITAL_PEER_CHAINCODE_PORT:-7052}
HOSPITAL_PEER_OPERATIONS_PORT=${HOSPITAL_PEER_OPERATIONS_PORT:-9444}
RESEARCH_PEER_HOST=${RESEARCH_PEER_HOST:-127.0.0.1}
RESEARCH_PEER_PORT=${RESEARCH_PEER_PORT:-9051}
RESEARCH_PEER_CHAINCODE_PORT=${RESEARCH_PEER_CHAINCODE_PORT:-9052}
RESEARCH_PEER_OPERATIONS_PORT=${RESEARCH_PEER_OPERATIONS_PORT:-9445}
# The chaincode service (python -m chaincode.server): the peers dial CHAINCODE_HOST:CHAINCODE_PORT.
CHAINCODE_HOST=${CHAINCODE_HOST:-127.0.0.1}
CHAINCODE_PORT=${CHAINCODE_PORT:-9999}
# Mutual TLS between the peers and the chaincode service: "true" (default) or "false" (plaintext).
CHAINCODE_TLS=${CHAINCODE_TLS:-true}

CHANNEL_NAME=${CHANNEL_NAME:-health}
CHAINCODE_NAME=${CHAINCODE_NAME:-health}
CHAINCODE_VERSION=${CHAINCODE_VERSION:-1.0}
CHAINCODE_SEQUENCE=${CHAINCODE_SEQUENCE:-1}
CHAINCODE_LABEL=${CHAINCODE_LABEL:-${CHAINCODE_NAME}_${CHAINCODE_VERSION}}
# Every transaction needs both organisations' endorsement.
ENDORSEMENT_POLICY=${ENDORSEMENT_POLICY:-"AND('HospitalMSP.peer','ResearchMSP.peer')"}
# How long the orderer waits to fill a block: short, so that a submit commits in tens of milliseconds.
BATCH_TIMEOUT=${BATCH_TIMEOUT:-20ms}

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
    if [ -x "$REPO_DIR/.venv/bin/python" ]; then PYTHON=$REPO_DIR/.venv/bin/python; else PYTHON=python3; fi
fi

CRYPTO_DIR=$NETWORK_DIR/crypto
ORDERER_ORG_DIR=$CRYPTO_DIR/ordererOrganizations/ordering
ORDERER_NODE_DIR=$ORDERER_ORG_DIR/orderers/orderer0.ordering
ORDERER_ADMIN_DIR=$ORDERER_ORG_DIR/users/Admin@ordering
ORDERER_TLS_CA=$ORDERER_NODE_DIR/tls/ca.crt
PEER_CONFIG_DIR=$NETWORK_DIR/config/peer
CHAINCODE_SERVER_TLS_DIR=$CRYPTO_DIR/peerOrganizations/hospital/peers/chaincode.hospital/tls
CHAINCODE_CLIENT_TLS_DIR=$CRYPTO_DIR/peerOrganizations/hospital/peers/chaincode-client.hospital/tls
CHANNEL_BLOCK=$NETWORK_DIR/channel/$CHANNEL_NAME.block
PACKAGE_FILE=$NETWORK_DIR/chaincode/$CHAINCODE_LABEL.tar.gz
PACKAGE_ID_FILE=$NETWORK_DIR/chaincode/package-id

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

# org_settings hospital|research: the organisation's MSP id, its peer's addresses and its crypto paths.
org_settings() {
    case "$1" in
    hospital)
        ORG_MSP_ID=HospitalMSP
        PEER_HOST=$HOSPITAL_PEER_HOST
        PEER_PORT=$HOSPITAL_PEER_PORT
        PEER_CHAINCODE_PORT=$HOSPITAL_PEER_CHAINCODE_PORT
        PEER_OPERATIONS_PORT=$HOSPITAL_PEER_OPERATIONS_PORT
        ;;
    research)
        ORG_MSP_ID=ResearchMSP
        PEER_HOST=$RESEARCH_PEER_HOST
        PEER_PORT=$RESEARCH_PEER_PORT
        PEER_CHAINCODE_PORT=$RESEARCH_PEER_CHAINCODE_PORT
        PEER_OPERATIONS_PORT=$RESEARCH_PEER_OPERATIONS_PORT
        ;;
    *) fail "unknown organisation '$1' (hospital or research)" ;;
    esac
    ORG=$1
    PEER_NAME=peer0.$1
    ORG_DIR=$CRYPTO_DIR/peerOrganizations/$1
    PEER_DIR=$ORG_DIR/peers/$PEER_NAME
    PEER_TLS_CA=$PEER_DIR/tls/ca.crt
    ORG_ADMIN_MSP=$ORG_DIR/users/Admin@$1/msp
}

# as_admin hospital|research: point the peer CLI at the organisation's peer, as its admin.
as_admin() {
    org_settings "$1"
    export FABRIC_CFG_PATH="$PEER_CONFIG_DIR"
    export CORE_PEER_LOCALMSPID="$ORG_MSP_ID"
    export CORE_PEER_MSPCONFIGPATH="$ORG_ADMIN_MSP"
    export CORE_PEER_ADDRESS="$PEER_HOST:$PEER_PORT"
    export CORE_PEER_TLS_ENABLED="true"
    export CORE_PEER_TLS_ROOTCERT_FILE="$PEER_TLS_CA"
    export FABRIC_LOGGING_SPEC="${FABRIC_CLI_LOGGING_SPEC:-WARNING}"
}

# render TEMPLATE OUTPUT: copy a template, replacing each @NAME@ with the value of $NAME.
render() {
    mkdir -p "$(dirname "$2")"
    sed -e "s|@NETWORK_DIR@|$NETWORK_DIR|g" \
        -e "s|@CRYPTO_DIR@|$CRYPTO_DIR|g" \
        -e "s|@ORDERER_HOST@|$ORDERER_HOST|g" \
        -e "s|@ORDERER_PORT@|$ORDERER_PORT|g" \
        -e "s|@ORDERER_CLUSTER_PORT@|$ORDERER_CLUSTER_PORT|g" \
        -e "s|@HOSPITAL_PEER_HOST@|$HOSPITAL_PEER_HOST|g" \
        -e "s|@HOSPITAL_PEER_PORT@|$HOSPITAL_PEER_PORT|g" \
        -e "s|@RESEARCH_PEER_HOST@|$RESEARCH_PEER_HOST|g" \
        -e "s|@RESEARCH_PEER_PORT@|$RESEARCH_PEER_PORT|g" \
        -e "s|@CHAINCODE_HOST@|$CHAINCODE_HOST|g" \
        -e "s|@BATCH_TIMEOUT@|$BATCH_TIMEOUT|g" \
        "$1" >"$2"
}
