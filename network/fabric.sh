#!/bin/sh
# The project's Fabric network: two organisations (HospitalMSP: peer0.hospital, ResearchMSP:
# peer0.research), one etcdraft ordering node (OrdererMSP: orderer0.ordering), one channel, the
# project's chaincode as a service. POSIX sh; settings in network/env.sh, all overridable.
#
#   fabric.sh up          native: prepare, start the nodes, create the channel, deploy the chaincode,
#                         start the chaincode service; writes $NETWORK_DIR/client.env (source it)
#   fabric.sh down        native: stop every process `up` started (their pids are in $NETWORK_DIR/run)
#   fabric.sh prepare     crypto material, the channel's genesis block, the peers' core.yaml
#   fabric.sh node NAME   run one node in the foreground: orderer | hospital | research
#   fabric.sh channel     join the orderer (channel participation API) and both peers to the channel
#   fabric.sh deploy      package as ccaas, install on both peers, approve for both orgs, commit
#   fabric.sh chaincode   run the chaincode service in the foreground (python -m chaincode.server),
#                         with mutual TLS unless CHAINCODE_TLS=false
#   fabric.sh client-env  print the environment a Gateway client (ledger.open_ledger) needs
#   fabric.sh export-client DIR [OWNER]
#                         copy the client identity (HospitalMSP User1) and the peer's TLS CA into DIR,
#                         readable by OWNER (uid[:gid]) only, with DIR/client.env pointing at the copies
#   fabric.sh export-chaincode-tls DIR [OWNER]
#                         copy the chaincode service's TLS key, certificate and client CA into DIR
#
# Every step can be run again: what already exists is kept. The compose stack runs prepare, node,
# channel + deploy and chaincode in separate containers; `up` runs them all as local processes.

set -eu

. "$(cd "$(dirname "$0")" && pwd)/env.sh"

CHAINCODE_BUILDER_DIR=${CHAINCODE_BUILDER_DIR:-$REPO_DIR/chaincode/builder}
RUN_DIR=$NETWORK_DIR/run
LOG_DIR=$NETWORK_DIR/logs

prepare() {
    require cryptogen configtxgen
    [ -n "${FABRIC_CONFIG_DIR:-}" ] ||
        fail "no core.yaml/orderer.yaml found: set FABRIC_CONFIG_DIR to Fabric's config folder"
    mkdir -p "$NETWORK_DIR"
    if [ ! -f "$ORDERER_TLS_CA" ]; then
        log "generating crypto material in $CRYPTO_DIR"
        render "$NETWORK_SCRIPTS_DIR/templates/crypto-config.yaml" "$NETWORK_DIR/config/crypto-config.yaml"
        cryptogen generate --config="$NETWORK_DIR/config/crypto-config.yaml" --output="$CRYPTO_DIR" >/dev/null
    fi
    if [ ! -f "$CHANNEL_BLOCK" ]; then
        log "generating the genesis block of channel $CHANNEL_NAME"
        render "$NETWORK_SCRIPTS_DIR/templates/configtx.yaml" "$NETWORK_DIR/config/configtx/configtx.yaml"
        mkdir -p "$(dirname "$CHANNEL_BLOCK")"
        FABRIC_CFG_PATH=$NETWORK_DIR/config/configtx FABRIC_LOGGING_SPEC=WARNING \
            configtxgen -profile HealthChannel -channelID "$CHANNEL_NAME" -outputBlock "$CHANNEL_BLOCK"
    fi
    # Fabric's core.yaml with the Docker endpoint removed: chaincode runs as a service, never in a
    # container the peer builds, and the peer's health check must not depend on a Docker daemon.
    mkdir -p "$PEER_CONFIG_DIR" "$NETWORK_DIR/config/orderer"
    sed -e 's|^\( *endpoint:\) unix:///var/run/docker.sock.*$|\1 ""|' \
        "$FABRIC_CONFIG_DIR/core.yaml" >"$PEER_CONFIG_DIR/core.yaml"
    cp "$FABRIC_CONFIG_DIR/orderer.yaml" "$NETWORK_DIR/config/orderer/orderer.yaml"
}

run_orderer() {
    require orderer
    tls=$ORDERER_NODE_DIR/tls
    export FABRIC_CFG_PATH="$NETWORK_DIR/config/orderer"
    export FABRIC_LOGGING_SPEC="${FABRIC_LOGGING_SPEC:-INFO}"
    export ORDERER_GENERAL_LISTENADDRESS="$NETWORK_LISTEN_HOST"
    export ORDERER_GENERAL_LISTENPORT="$ORDERER_PORT"
    export ORDERER_GENERAL_LOCALMSPID="OrdererMSP"
    export ORDERER_GENERAL_LOCALMSPDIR="$ORDERER_NODE_DIR/msp"
    export ORDERER_GENERAL_TLS_ENABLED="true"
    export ORDERER_GENERAL_TLS_PRIVATEKEY="$tls/server.key"
    export ORDERER_GENERAL_TLS_CERTIFICATE="$tls/server.crt"
    export ORDERER_GENERAL_TLS_ROOTCAS="[$tls/ca.crt]"
    export ORDERER_GENERAL_BOOTSTRAPMETHOD="none"
    export ORDERER_CHANNELPARTICIPATION_ENABLED="true"
    export ORDERER_ADMIN_LISTENADDRESS="$NETWORK_LISTEN_HOST:$ORDERER_ADMIN_PORT"
    export ORDERER_ADMIN_TLS_ENABLED="true"
    export ORDERER_ADMIN_TLS_PRIVATEKEY="$tls/server.key"
    export ORDERER_ADMIN_TLS_CERTIFICATE="$tls/server.crt"
    export ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED="true"
    export ORDERER_ADMIN_TLS_CLIENTROOTCAS="[$tls/ca.crt]"
    export ORDERER_OPERATIONS_LISTENADDRESS="$NETWORK_LISTEN_HOST:$ORDERER_OPERATIONS_PORT"
    export ORDERER_METRICS_PROVIDER="disabled"
    export ORDERER_FILELEDGER_LOCATION="$NETWORK_DIR/data/orderer0.ordering"
    export ORDERER_CONSENSUS_WALDIR="$NETWORK_DIR/data/orderer0.ordering/etcdraft/wal"
    export ORDERER_CONSENSUS_SNAPDIR="$NETWORK_DIR/data/orderer0.ordering/etcdraft/snapshot"
    exec orderer
}

run_peer() {
    require peer
    org_settings "$1"
    tls=$PEER_DIR/tls
    export FABRIC_CFG_PATH="$PEER_CONFIG_DIR"
    export FABRIC_LOGGING_SPEC="${FABRIC_LOGGING_SPEC:-INFO}"
    export CORE_PEER_ID="$PEER_NAME"
    export CORE_PEER_ADDRESS="$PEER_HOST:$PEER_PORT"
    export CORE_PEER_LISTENADDRESS="$NETWORK_LISTEN_HOST:$PEER_PORT"
    export CORE_PEER_CHAINCODEADDRESS="$PEER_HOST:$PEER_CHAINCODE_PORT"
    export CORE_PEER_CHAINCODELISTENADDRESS="$NETWORK_LISTEN_HOST:$PEER_CHAINCODE_PORT"
    export CORE_PEER_GOSSIP_BOOTSTRAP="$PEER_HOST:$PEER_PORT"
    export CORE_PEER_GOSSIP_EXTERNALENDPOINT="$PEER_HOST:$PEER_PORT"
    # Two peers, not hundreds: gossip often enough that the organisations find each other (and the
    # gateway can collect both endorsements) within seconds of joining, not Fabric's default ~30 s.
    export CORE_PEER_GOSSIP_ALIVETIMEINTERVAL="${CORE_PEER_GOSSIP_ALIVETIMEINTERVAL:-1s}"
    export CORE_PEER_GOSSIP_ALIVEEXPIRATIONTIMEOUT="${CORE_PEER_GOSSIP_ALIVEEXPIRATIONTIMEOUT:-5s}"
    export CORE_PEER_GOSSIP_RECONNECTINTERVAL="${CORE_PEER_GOSSIP_RECONNECTINTERVAL:-2s}"
    export CORE_PEER_GOSSIP_PUBLISHSTATEINFOINTERVAL="${CORE_PEER_GOSSIP_PUBLISHSTATEINFOINTERVAL:-1s}"
    export CORE_PEER_GOSSIP_REQUESTSTATEINFOINTERVAL="${CORE_PEER_GOSSIP_REQUESTSTATEINFOINTERVAL:-1s}"
    export CORE_PEER_LOCALMSPID="$ORG_MSP_ID"
    export CORE_PEER_MSPCONFIGPATH="$PEER_DIR/msp"
    export CORE_PEER_TLS_ENABLED="true"
    export CORE_PEER_TLS_CERT_FILE="$tls/server.crt"
    export CORE_PEER_TLS_KEY_FILE="$tls/server.key"
    export CORE_PEER_TLS_ROOTCERT_FILE="$tls/ca.crt"
    export CORE_PEER_FILESYSTEMPATH="$NETWORK_DIR/data/$PEER_NAME"
    export CORE_LEDGER_SNAPSHOTS_ROOTDIR="$NETWORK_DIR/data/$PEER_NAME/snapshots"
    export CORE_OPERATIONS_LISTENADDRESS="$NETWORK_LISTEN_HOST:$PEER_OPERATIONS_PORT"
    export CORE_METRICS_PROVIDER="disabled"
    # The project's ccaas builder (chaincode/builder): the only builder, so no chaincode is ever
    # built or launched by the peer itself.
    export CORE_CHAINCODE_EXTERNALBUILDERS="[{name: health-ccaas, path: $CHAINCODE_BUILDER_DIR}]"
    exec peer node start
}

channel() {
    require osnadmin peer
    admin_tls=$ORDERER_ADMIN_DIR/tls
    if osnadmin channel list -o "$ORDERER_HOST:$ORDERER_ADMIN_PORT" --ca-file "$ORDERER_TLS_CA" \
        --client-cert "$admin_tls/client.crt" --client-key "$admin_tls/client.key" 2>/dev/null |
        grep -q "\"name\": *\"$CHANNEL_NAME\""; then
        log "orderer already serves channel $CHANNEL_NAME"
    else
        log "joining the orderer to channel $CHANNEL_NAME"
        osnadmin channel join --channelID "$CHANNEL_NAME" --config-block "$CHANNEL_BLOCK" \
            -o "$ORDERER_HOST:$ORDERER_ADMIN_PORT" --ca-file "$ORDERER_TLS_CA" \
            --client-cert "$admin_tls/client.crt" --client-key "$admin_tls/client.key" >/dev/null
    fi
    for org in hospital research; do
        as_admin "$org"
        if peer channel list 2>/dev/null | grep -qx "$CHANNEL_NAME"; then
            log "$PEER_NAME already joined $CHANNEL_NAME"
        else
            log "joining $PEER_NAME to channel $CHANNEL_NAME"
            retry 10 peer channel join -b "$CHANNEL_BLOCK"
        fi
    done
}

package() {
    if [ -f "$PACKAGE_FILE" ]; then
        return
    fi
    log "packaging chaincode $CHAINCODE_LABEL (ccaas, service at $CHAINCODE_HOST:$CHAINCODE_PORT, TLS $CHAINCODE_TLS)"
    work=$NETWORK_DIR/chaincode/package
    rm -rf "$work"
    mkdir -p "$work"
    if [ "$CHAINCODE_TLS" = true ]; then
        # The peer checks the service's certificate against the hospital's TLS CA and presents the
        # chaincode-client certificate, which the service checks against the same CA.
        printf '{"address":"%s:%s","dial_timeout":"10s","tls_required":true,"client_auth_required":true,"root_cert":"%s","client_cert":"%s","client_key":"%s"}\n' \
            "$CHAINCODE_HOST" "$CHAINCODE_PORT" "$(json_text "$CHAINCODE_SERVER_TLS_DIR/ca.crt")" \
            "$(json_text "$CHAINCODE_CLIENT_TLS_DIR/server.crt")" "$(json_text "$CHAINCODE_CLIENT_TLS_DIR/server.key")" \
            >"$work/connection.json"
    else
        printf '{"address":"%s:%s","dial_timeout":"10s","tls_required":false}\n' \
            "$CHAINCODE_HOST" "$CHAINCODE_PORT" >"$work/connection.json"
    fi
    printf '{"type":"ccaas","label":"%s"}\n' "$CHAINCODE_LABEL" >"$work/metadata.json"
    (cd "$work" && tar -czf code.tar.gz connection.json && tar -czf "$PACKAGE_FILE" metadata.json code.tar.gz)
}

# json_text FILE: the file's text as the inside of a JSON string (PEM: newlines as \n).
json_text() {
    awk '{ printf "%s\\n", $0 }' "$1"
}

deploy() {
    require peer
    package
    as_admin hospital
    package_id=$(peer lifecycle chaincode calculatepackageid "$PACKAGE_FILE")
    for org in hospital research; do
        as_admin "$org"
        if peer lifecycle chaincode queryinstalled 2>/dev/null | grep -q "Package ID: $package_id,"; then
            log "$package_id already installed on $PEER_NAME"
        else
            log "installing $package_id on $PEER_NAME"
            retry 5 peer lifecycle chaincode install "$PACKAGE_FILE"
        fi
    done
    printf '%s\n' "$package_id" >"$PACKAGE_ID_FILE"
    if committed; then
        log "$CHAINCODE_NAME sequence $CHAINCODE_SEQUENCE already committed on $CHANNEL_NAME"
        return
    fi
    orderer_args="-o $ORDERER_HOST:$ORDERER_PORT --tls --cafile $ORDERER_TLS_CA"
    definition="--channelID $CHANNEL_NAME --name $CHAINCODE_NAME --version $CHAINCODE_VERSION --sequence $CHAINCODE_SEQUENCE"
    for org in hospital research; do
        as_admin "$org"
        log "approving $CHAINCODE_NAME for $ORG_MSP_ID"
        # shellcheck disable=SC2086 # the argument lists are meant to split
        retry 5 peer lifecycle chaincode approveformyorg $orderer_args $definition \
            --package-id "$package_id" --signature-policy "$ENDORSEMENT_POLICY"
    done
    org_settings research
    research_peer=$PEER_HOST:$PEER_PORT
    research_ca=$PEER_TLS_CA
    as_admin hospital
    log "committing $CHAINCODE_NAME on $CHANNEL_NAME, endorsed by both organisations"
    # shellcheck disable=SC2086
    retry 5 peer lifecycle chaincode commit $orderer_args $definition \
        --signature-policy "$ENDORSEMENT_POLICY" \
        --peerAddresses "$CORE_PEER_ADDRESS" --tlsRootCertFiles "$CORE_PEER_TLS_ROOTCERT_FILE" \
        --peerAddresses "$research_peer" --tlsRootCertFiles "$research_ca"
    for org in hospital research; do
        as_admin "$org"
        attempts=0
        until committed; do
            attempts=$((attempts + 1))
            [ "$attempts" -lt 100 ] || fail "$CHAINCODE_NAME is not committed on $PEER_NAME"
            sleep 0.1
        done
    done
    log "$CHAINCODE_NAME committed; package id $package_id"
}

# Wait until each peer's discovery service names endorsers of both organisations for the chaincode:
# what the gateway needs before it can collect both endorsements (gossip takes a few seconds to
# connect the organisations' peers after they join the channel).
wait_for_endorsers() {
    require discover
    for org in hospital research; do
        org_settings "$org"
        user=$ORG_DIR/users/Admin@$org/msp
        attempts=0
        until discover endorsers --channel "$CHANNEL_NAME" --chaincode "$CHAINCODE_NAME" \
            --server "$PEER_HOST:$PEER_PORT" --peerTLSCA "$PEER_TLS_CA" --MSP "$ORG_MSP_ID" \
            --userCert "$user/signcerts/Admin@$org-cert.pem" --userKey "$user/keystore/priv_sk" 2>/dev/null |
            tr -d ' \n' | grep -q '"ResearchMSP".*"HospitalMSP"\|"HospitalMSP".*"ResearchMSP"'; do
            attempts=$((attempts + 1))
            [ "$attempts" -lt 600 ] || fail "$PEER_NAME's discovery does not name both organisations' endorsers"
            sleep 0.1
        done
    done
    log "both peers' gateways can collect both organisations' endorsements"
}

committed() {
    peer lifecycle chaincode querycommitted --channelID "$CHANNEL_NAME" --name "$CHAINCODE_NAME" 2>/dev/null |
        grep -q "Sequence: $CHAINCODE_SEQUENCE,"
}

run_chaincode() {
    attempts=0
    while [ ! -s "$PACKAGE_ID_FILE" ]; do
        attempts=$((attempts + 1))
        [ "$attempts" -lt 600 ] || fail "no package id in $PACKAGE_ID_FILE: run '$0 deploy' first"
        sleep 1
    done
    CHAINCODE_ID=$(cat "$PACKAGE_ID_FILE")
    export CHAINCODE_ID
    export CHAINCODE_SERVER_ADDRESS="${CHAINCODE_SERVER_ADDRESS:-$NETWORK_LISTEN_HOST:$CHAINCODE_PORT}"
    if [ "$CHAINCODE_TLS" = true ]; then
        tls=${CHAINCODE_TLS_DIR:-$CHAINCODE_SERVER_TLS_DIR}
        export CHAINCODE_TLS_KEY="$tls/server.key"
        export CHAINCODE_TLS_CERT="$tls/server.crt"
        export CHAINCODE_CLIENT_CA_CERT="$tls/ca.crt"
    else
        export CHAINCODE_TLS_DISABLED="true"
    fi
    cd "$REPO_DIR"
    exec "$PYTHON" -m chaincode.server
}

client_env() {
    org_settings hospital
    user=$ORG_DIR/users/User1@hospital/msp
    cat <<EOF
LEDGER_URL=fabric://$PEER_HOST:$PEER_PORT/$CHANNEL_NAME/$CHAINCODE_NAME
FABRIC_MSP_ID=$ORG_MSP_ID
FABRIC_CERT_PATH=$user/signcerts/User1@hospital-cert.pem
FABRIC_KEY_PATH=$user/keystore/priv_sk
FABRIC_TLS_CA_PATH=$PEER_TLS_CA
EOF
}

export_client() {
    [ -n "${1:-}" ] || fail "usage: $0 export-client DIR [OWNER]"
    org_settings hospital
    user=$ORG_DIR/users/User1@hospital/msp
    mkdir -p "$1"
    cp "$user/signcerts/User1@hospital-cert.pem" "$1/cert.pem"
    cp "$user/keystore/priv_sk" "$1/key.pem"
    cp "$PEER_TLS_CA" "$1/tls-ca.pem"
    chmod 0600 "$1/key.pem"
    client_env | sed -e "s|^FABRIC_CERT_PATH=.*|FABRIC_CERT_PATH=$1/cert.pem|" \
        -e "s|^FABRIC_KEY_PATH=.*|FABRIC_KEY_PATH=$1/key.pem|" \
        -e "s|^FABRIC_TLS_CA_PATH=.*|FABRIC_TLS_CA_PATH=$1/tls-ca.pem|" >"$1/client.env"
    if [ -n "${2:-}" ]; then
        chown -R "$2" "$1"
    fi
    log "client identity exported to $1"
}

# export_chaincode_tls DIR [OWNER]: the chaincode service's TLS key, certificate and client CA, for a
# service that runs as another user (the compose stack's chaincode container).
export_chaincode_tls() {
    [ -n "${1:-}" ] || fail "usage: $0 export-chaincode-tls DIR [OWNER]"
    mkdir -p "$1"
    cp "$CHAINCODE_SERVER_TLS_DIR/server.key" "$CHAINCODE_SERVER_TLS_DIR/server.crt" "$CHAINCODE_SERVER_TLS_DIR/ca.crt" "$1/"
    chmod 0600 "$1/server.key"
    if [ -n "${2:-}" ]; then
        chown -R "$2" "$1"
    fi
    log "chaincode service TLS exported to $1"
}

# retry N COMMAND...: run COMMAND until it succeeds, at most N times, one second apart.
retry() {
    tries=$1
    shift
    n=1
    until "$@"; do
        [ "$n" -lt "$tries" ] || fail "failed $tries times: $*"
        n=$((n + 1))
        sleep 1
    done
}

# start NAME ARGS...: run `fabric.sh ARGS...` in the background, its pid in $RUN_DIR/NAME.pid.
start() {
    name=$1
    shift
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    nohup sh "$NETWORK_SCRIPTS_DIR/fabric.sh" "$@" >"$LOG_DIR/$name.log" 2>&1 &
    echo $! >"$RUN_DIR/$name.pid"
}

# wait_for_port NAME HOST PORT: wait until HOST:PORT accepts connections, or NAME's process died.
wait_for_port() {
    attempts=0
    until "$PYTHON" -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' \
        "$2" "$3" 2>/dev/null; do
        pid=$(cat "$RUN_DIR/$1.pid")
        kill -0 "$pid" 2>/dev/null || fail "$1 exited; its log: $LOG_DIR/$1.log"
        attempts=$((attempts + 1))
        [ "$attempts" -lt 300 ] || fail "$1 did not listen on $2:$3 within 30 s"
        sleep 0.1
    done
}

up() {
    # A half-started network is stopped again; its logs stay in $LOG_DIR.
    # shellcheck disable=SC2154 # status is assigned inside the trap
    trap 'status=$?; [ "$status" -eq 0 ] || down; exit "$status"' EXIT
    prepare
    start orderer node orderer
    start peer0.hospital node hospital
    start peer0.research node research
    wait_for_port orderer "$ORDERER_HOST" "$ORDERER_ADMIN_PORT"
    wait_for_port peer0.hospital "$HOSPITAL_PEER_HOST" "$HOSPITAL_PEER_PORT"
    wait_for_port peer0.research "$RESEARCH_PEER_HOST" "$RESEARCH_PEER_PORT"
    channel
    deploy
    wait_for_endorsers
    start chaincode chaincode
    wait_for_port chaincode "$CHAINCODE_HOST" "$CHAINCODE_PORT"
    client_env >"$NETWORK_DIR/client.env"
    trap - EXIT
    log "network up; client settings in $NETWORK_DIR/client.env"
}

down() {
    [ -d "$RUN_DIR" ] || return 0
    for pid_file in "$RUN_DIR"/*.pid; do
        [ -f "$pid_file" ] || continue
        kill "$(cat "$pid_file")" 2>/dev/null || true
    done
    for pid_file in "$RUN_DIR"/*.pid; do
        [ -f "$pid_file" ] || continue
        pid=$(cat "$pid_file")
        attempts=0
        while kill -0 "$pid" 2>/dev/null; do
            attempts=$((attempts + 1))
            if [ "$attempts" -ge 100 ]; then
                kill -9 "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
        rm -f "$pid_file"
    done
    log "network stopped"
}

case "${1:-}" in
up) up ;;
down) down ;;
prepare) prepare ;;
node)
    case "${2:-}" in
    orderer) run_orderer ;;
    hospital | research) run_peer "$2" ;;
    *) fail "usage: $0 node orderer|hospital|research" ;;
    esac
    ;;
channel) channel ;;
deploy)
    deploy
    wait_for_endorsers
    ;;
chaincode) run_chaincode ;;
client-env) client_env ;;
export-client) export_client "${2:-}" "${3:-}" ;;
export-chaincode-tls) export_chaincode_tls "${2:-}" "${3:-}" ;;
*)
    sed -n '2,22s/^# \{0,1\}//p' "$0" >&2
    exit 2
    ;;
esac
