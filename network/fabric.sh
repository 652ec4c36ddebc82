#!/bin/sh
# The project's Fabric network: three organisations that do not trust each other -- the hospital
# (HospitalMSP: peer0.hospital, peer1.hospital), research (ResearchMSP: peer0.research) and the
# ordering service (OrdererMSP: orderer0/1/2.ordering, etcdraft) -- one channel, the project's
# chaincode served by each peer organisation's own chaincode service. Each organisation's keys stay
# in its own folder ($NETWORK_DIR/orgs/ORG, mode 0700); what the others may see is published in
# $NETWORK_DIR/public/ORG. POSIX sh; settings in network/env.sh, all overridable.
#
#   fabric.sh up              native: every step below as local processes; writes $NETWORK_DIR/client.env
#   fabric.sh down            native: stop every process `up` started (their pids are in $NETWORK_DIR/run)
#   fabric.sh prepare-org ORG ORG's keys (cryptogen, that organisation only) and config into orgs/ORG;
#                             its certificates into public/ORG.  ORG: ordering | hospital | research
#   fabric.sh genesis         the channel's genesis block, from the public folders only
#   fabric.sh prepare         prepare-org for the three organisations, then genesis
#   fabric.sh node NODE       run one node in the foreground: orderer0.ordering | orderer1.ordering |
#                             orderer2.ordering | peer0.hospital | peer1.hospital | peer0.research
#   fabric.sh start-node NODE native: start one node in the background as `up` does (a node that
#                             stopped or crashed), and wait until it listens
#   fabric.sh join ORG        ORG's admin joins ORG's nodes to the channel (osnadmin or peer channel join)
#   fabric.sh approve ORG     ORG's admin packages ORG's ccaas package (pointing at ORG's own chaincode
#                             service), installs it on ORG's peers and approves the definition for ORG
#   fabric.sh commit [ORG]    ORG's admin (default COMMIT_ORG) commits the definition every organisation
#                             approved, reaching the others' peers with their public TLS CAs only
#   fabric.sh committed [ORG] print the committed chaincode definition (version, sequence, approvals)
#   fabric.sh deploy          approve hospital, approve research, commit (a code change: next sequence)
#   fabric.sh endorsers ORG   wait until ORG's gateway peer can collect both organisations' endorsements
#   fabric.sh chaincode ORG   run ORG's chaincode service in the foreground (python -m chaincode.server),
#                             with mutual TLS (ORG's TLS CA only) unless CHAINCODE_TLS=false
#   fabric.sh client-env [ORG]
#                             print the environment a Gateway client (ledger.open_ledger) needs, as ORG's
#                             User1 (hospital, the default, or research: the platform instance of that
#                             organisation), its own organisation's gateway peer first
#   fabric.sh export-client DIR [OWNER] [ORG]
#                             copy ORG's client identity (User1 of hospital, the default, or research) and
#                             the gateway TLS CA bundle into DIR, readable by OWNER (uid[:gid]) only, with
#                             DIR/client.env (ORG's own gateway peer first)
#   fabric.sh export-chaincode ORG DIR [OWNER]
#                             copy ORG's chaincode service TLS key, certificate, client CA and package id
#
# Every step can be run again: what already exists is kept. The compose stack runs each organisation's
# steps in its own containers; `up` runs them all as local processes.

set -eu

. "$(cd "$(dirname "$0")" && pwd)/env.sh"

CHAINCODE_BUILDER_DIR=${CHAINCODE_BUILDER_DIR:-$REPO_DIR/chaincode/builder}
RUN_DIR=$NETWORK_DIR/run
LOG_DIR=$NETWORK_DIR/logs

# --- each organisation's keys, and what it publishes -------------------------------------------------

prepare_org() {
    require cryptogen
    org_settings "$1"
    [ -n "${FABRIC_CONFIG_DIR:-}" ] ||
        fail "no core.yaml/orderer.yaml found: set FABRIC_CONFIG_DIR to Fabric's config folder"
    mkdir -p "$ORG_HOME"
    chmod 0700 "$ORG_HOME"
    if [ ! -d "$ORG_HOME/msp" ]; then
        log "generating $ORG_MSP_ID's keys in $ORG_HOME"
        crypto_config >"$ORG_HOME/crypto-config.yaml"
        rm -rf "$ORG_HOME/generated"
        cryptogen generate --config="$ORG_HOME/crypto-config.yaml" --output="$ORG_HOME/generated" >/dev/null
        mv "$ORG_HOME/generated/${ORG_KIND}Organizations/$1"/* "$ORG_HOME/"
        rm -rf "$ORG_HOME/generated"
    fi
    mkdir -p "$ORG_CONFIG_DIR"
    if [ "$ORG_KIND" = orderer ]; then
        cp "$FABRIC_CONFIG_DIR/orderer.yaml" "$ORG_CONFIG_DIR/orderer.yaml"
    else
        # Fabric's core.yaml with the Docker endpoint removed: chaincode runs as a service, never in a
        # container the peer builds, and the peer's health check must not depend on a Docker daemon.
        sed -e 's|^\( *endpoint:\) unix:///var/run/docker.sock.*$|\1 ""|' \
            "$FABRIC_CONFIG_DIR/core.yaml" >"$ORG_CONFIG_DIR/core.yaml"
    fi
    publish
}

# crypto_config: cryptogen's input for the current organisation alone; each node's TLS certificate
# names the host it is dialled at.
crypto_config() {
    if [ "$ORG_KIND" = orderer ]; then kind=Orderer; else kind=Peer; fi
    printf '%sOrgs:\n  - Name: %s\n    Domain: %s\n    EnableNodeOUs: true\n    Specs:\n' "$kind" "$ORG" "$ORG"
    for node in $ORG_NODES; do
        node_settings "$node"
        crypto_spec "${node%%.*}" "$NODE_HOST"
    done
    if [ "$ORG_KIND" = peer ]; then
        # TLS for the organisation's chaincode service: its server certificate, and the client
        # certificate its peers present to it. Neither is a node of the channel.
        crypto_spec chaincode "$ORG_CHAINCODE_HOST"
        crypto_spec chaincode-client localhost
        printf '    Users:\n      Count: 1\n'
    fi
}

crypto_spec() {
    printf '      - Hostname: %s\n        SANS:\n          - localhost\n          - 127.0.0.1\n          - "%s"\n' "$1" "$2"
}

# publish: the current organisation's certificates that others need, into public/ORG: its MSP
# definition (CA and TLS CA certificates, NodeOU config), its TLS CA, and its orderers' TLS
# certificates (the Raft consenters). Never a key: only *.pem, *.crt and config.yaml are copied.
publish() {
    mkdir -p "$ORG_PUBLIC/msp/cacerts" "$ORG_PUBLIC/msp/tlscacerts"
    cp "$ORG_HOME"/msp/cacerts/*.pem "$ORG_PUBLIC/msp/cacerts/"
    cp "$ORG_HOME"/msp/tlscacerts/*.pem "$ORG_PUBLIC/msp/tlscacerts/"
    cp "$ORG_HOME/msp/config.yaml" "$ORG_PUBLIC/msp/config.yaml"
    cp "$ORG_HOME"/tlsca/*.pem "$ORG_TLS_CA"
    if [ "$ORG_KIND" = orderer ]; then
        for node in $ORG_NODES; do
            mkdir -p "$ORG_PUBLIC/orderers/$node/tls"
            cp "$ORG_HOME/orderers/$node/tls/server.crt" "$ORG_PUBLIC/orderers/$node/tls/server.crt"
        done
    fi
}

genesis() {
    require configtxgen
    if [ -f "$CHANNEL_BLOCK" ]; then
        return
    fi
    for org in ordering $PEER_ORGS; do
        [ -f "$PUBLIC_DIR/$org/msp/config.yaml" ] || fail "$org has not published its certificates: run '$0 prepare-org $org'"
    done
    log "generating the genesis block of channel $CHANNEL_NAME from $PUBLIC_DIR"
    render "$NETWORK_SCRIPTS_DIR/templates/configtx.yaml" "$PUBLIC_DIR/config/configtx.yaml"
    mkdir -p "$(dirname "$CHANNEL_BLOCK")"
    FABRIC_CFG_PATH=$PUBLIC_DIR/config FABRIC_LOGGING_SPEC=WARNING \
        configtxgen -profile HealthChannel -channelID "$CHANNEL_NAME" -outputBlock "$CHANNEL_BLOCK"
}

prepare() {
    for org in ordering $PEER_ORGS; do
        prepare_org "$org"
    done
    genesis
}

# --- the nodes: each given paths into its own organisation's folder and the public folder only -----

run_node() {
    node_settings "$1"
    tls=$NODE_DIR/tls
    export FABRIC_CFG_PATH="$ORG_CONFIG_DIR"
    export FABRIC_LOGGING_SPEC="${FABRIC_LOGGING_SPEC:-INFO}"
    if [ "$ORG_KIND" = orderer ]; then run_orderer; else run_peer; fi
}

run_orderer() {
    require orderer
    export ORDERER_GENERAL_LISTENADDRESS="$NETWORK_LISTEN_HOST"
    export ORDERER_GENERAL_LISTENPORT="$NODE_PORT"
    export ORDERER_GENERAL_LOCALMSPID="$ORG_MSP_ID"
    export ORDERER_GENERAL_LOCALMSPDIR="$NODE_DIR/msp"
    export ORDERER_GENERAL_TLS_ENABLED="true"
    export ORDERER_GENERAL_TLS_PRIVATEKEY="$tls/server.key"
    export ORDERER_GENERAL_TLS_CERTIFICATE="$tls/server.crt"
    export ORDERER_GENERAL_TLS_ROOTCAS="[$tls/ca.crt]"
    # Raft traffic between the orderers on its own port, with the node's TLS certificate (the one the
    # channel's consenter list names).
    export ORDERER_GENERAL_CLUSTER_LISTENADDRESS="$NETWORK_LISTEN_HOST"
    export ORDERER_GENERAL_CLUSTER_LISTENPORT="$NODE_CLUSTER_PORT"
    export ORDERER_GENERAL_CLUSTER_SERVERCERTIFICATE="$tls/server.crt"
    export ORDERER_GENERAL_CLUSTER_SERVERPRIVATEKEY="$tls/server.key"
    export ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE="$tls/server.crt"
    export ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY="$tls/server.key"
    export ORDERER_GENERAL_CLUSTER_ROOTCAS="[$tls/ca.crt]"
    export ORDERER_GENERAL_BOOTSTRAPMETHOD="none"
    export ORDERER_CHANNELPARTICIPATION_ENABLED="true"
    export ORDERER_ADMIN_LISTENADDRESS="$NETWORK_LISTEN_HOST:$NODE_ADMIN_PORT"
    export ORDERER_ADMIN_TLS_ENABLED="true"
    export ORDERER_ADMIN_TLS_PRIVATEKEY="$tls/server.key"
    export ORDERER_ADMIN_TLS_CERTIFICATE="$tls/server.crt"
    export ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED="true"
    export ORDERER_ADMIN_TLS_CLIENTROOTCAS="[$tls/ca.crt]"
    export ORDERER_OPERATIONS_LISTENADDRESS="$NETWORK_LISTEN_HOST:$NODE_OPERATIONS_PORT"
    export ORDERER_METRICS_PROVIDER
    export ORDERER_FILELEDGER_LOCATION="$NODE_DATA_DIR"
    export ORDERER_CONSENSUS_WALDIR="$NODE_DATA_DIR/etcdraft/wal"
    export ORDERER_CONSENSUS_SNAPDIR="$NODE_DATA_DIR/etcdraft/snapshot"
    exec orderer
}

run_peer() {
    require peer
    export CORE_PEER_ID="$NODE"
    export CORE_PEER_ADDRESS="$NODE_ADDRESS"
    export CORE_PEER_LISTENADDRESS="$NETWORK_LISTEN_HOST:$NODE_PORT"
    export CORE_PEER_CHAINCODEADDRESS="$NODE_HOST:$NODE_CHAINCODE_PORT"
    export CORE_PEER_CHAINCODELISTENADDRESS="$NETWORK_LISTEN_HOST:$NODE_CHAINCODE_PORT"
    bootstrap=$(org_peer_addresses "$NODE")
    export CORE_PEER_GOSSIP_BOOTSTRAP="$bootstrap"
    export CORE_PEER_GOSSIP_EXTERNALENDPOINT="$NODE_ADDRESS"
    # A few peers, not hundreds: gossip often enough that the organisations find each other (and the
    # gateway can collect both endorsements) within seconds of joining, not Fabric's default ~30 s,
    # and that a peer that stopped answering leaves the others' view within seconds.
    export CORE_PEER_GOSSIP_ALIVETIMEINTERVAL="${CORE_PEER_GOSSIP_ALIVETIMEINTERVAL:-1s}"
    export CORE_PEER_GOSSIP_ALIVEEXPIRATIONTIMEOUT="${CORE_PEER_GOSSIP_ALIVEEXPIRATIONTIMEOUT:-5s}"
    export CORE_PEER_GOSSIP_RECONNECTINTERVAL="${CORE_PEER_GOSSIP_RECONNECTINTERVAL:-2s}"
    export CORE_PEER_GOSSIP_PUBLISHSTATEINFOINTERVAL="${CORE_PEER_GOSSIP_PUBLISHSTATEINFOINTERVAL:-1s}"
    export CORE_PEER_GOSSIP_REQUESTSTATEINFOINTERVAL="${CORE_PEER_GOSSIP_REQUESTSTATEINFOINTERVAL:-1s}"
    export CORE_PEER_LOCALMSPID="$ORG_MSP_ID"
    export CORE_PEER_MSPCONFIGPATH="$NODE_DIR/msp"
    export CORE_PEER_TLS_ENABLED="true"
    export CORE_PEER_TLS_CERT_FILE="$tls/server.crt"
    export CORE_PEER_TLS_KEY_FILE="$tls/server.key"
    export CORE_PEER_TLS_ROOTCERT_FILE="$tls/ca.crt"
    export CORE_PEER_FILESYSTEMPATH="$NODE_DATA_DIR"
    export CORE_LEDGER_SNAPSHOTS_ROOTDIR="$NODE_DATA_DIR/snapshots"
    export CORE_OPERATIONS_LISTENADDRESS="$NETWORK_LISTEN_HOST:$NODE_OPERATIONS_PORT"
    export CORE_METRICS_PROVIDER="disabled"
    # The project's ccaas builder (chaincode/builder): the only builder, so no chaincode is ever
    # built or launched by the peer itself.
    export CORE_CHAINCODE_EXTERNALBUILDERS="[{name: health-ccaas, path: $CHAINCODE_BUILDER_DIR}]"
    exec peer node start
}

# org_peer_addresses NODE: the addresses of NODE's organisation's other peers (gossip inside the
# organisation), or NODE's own when it is alone.
org_peer_addresses() {
    addresses=""
    for peer_node in $ORG_NODES; do
        [ "$peer_node" != "$1" ] || continue
        node_settings "$peer_node"
        addresses="${addresses:+$addresses }$NODE_ADDRESS"
    done
    node_settings "$1"
    printf '%s\n' "${addresses:-$NODE_ADDRESS}"
}

# --- the channel ----------------------------------------------------------------------------------

join() {
    org_settings "$1"
    if [ "$ORG_KIND" = orderer ]; then join_orderers; else join_peers; fi
}

join_orderers() {
    require osnadmin
    for node in $ORG_NODES; do
        node_settings "$node"
        set -- -o "$NODE_HOST:$NODE_ADMIN_PORT" --ca-file "$ORG_TLS_CA" \
            --client-cert "$ORG_ADMIN_DIR/tls/client.crt" --client-key "$ORG_ADMIN_DIR/tls/client.key"
        if osnadmin channel list "$@" 2>/dev/null | grep -q "\"name\": *\"$CHANNEL_NAME\""; then
            log "$node already serves channel $CHANNEL_NAME"
        else
            log "joining $node to channel $CHANNEL_NAME"
            osnadmin channel join --channelID "$CHANNEL_NAME" --config-block "$CHANNEL_BLOCK" "$@" >/dev/null
        fi
    done
}

join_peers() {
    require peer
    for node in $ORG_NODES; do
        as_admin "$ORG" "$node"
        if peer channel list 2>/dev/null | grep -qx "$CHANNEL_NAME"; then
            log "$node already joined $CHANNEL_NAME"
        else
            log "joining $node to channel $CHANNEL_NAME"
            retry 10 peer channel join -b "$CHANNEL_BLOCK"
        fi
    done
}

# --- the chaincode's lifecycle: each organisation approves its own package with its own keys --------

# package: the current organisation's ccaas package, pointing at its own chaincode service and
# labelled (and described) with the code's hash, so that new code is a new package id.
package() {
    [ -n "$CHAINCODE_CODE_HASH" ] || fail "no chaincode code hash: is CHAINCODE_DIR ($CHAINCODE_DIR) there?"
    if [ -f "$PACKAGE_FILE" ]; then
        return
    fi
    log "packaging $CHAINCODE_LABEL for $ORG_MSP_ID (ccaas, service at $ORG_CHAINCODE_HOST:$ORG_CHAINCODE_PORT, TLS $CHAINCODE_TLS)"
    work=$ORG_HOME/chaincode/package
    rm -rf "$work"
    mkdir -p "$work"
    address="\"address\":\"$ORG_CHAINCODE_HOST:$ORG_CHAINCODE_PORT\",\"dial_timeout\":\"10s\""
    if [ "$CHAINCODE_TLS" = true ]; then
        # The peer checks the service's certificate against its own organisation's TLS CA and presents
        # the chaincode-client certificate, which the service checks against the same CA.
        printf '{%s,"tls_required":true,"client_auth_required":true,"root_cert":"%s","client_cert":"%s","client_key":"%s"}\n' \
            "$address" "$(json_text "$ORG_TLS_CA")" \
            "$(json_text "$ORG_HOME/peers/chaincode-client.$ORG/tls/server.crt")" \
            "$(json_text "$ORG_HOME/peers/chaincode-client.$ORG/tls/server.key")" >"$work/connection.json"
    else
        printf '{%s,"tls_required":false}\n' "$address" >"$work/connection.json"
    fi
    printf '{"type":"ccaas","label":"%s","code_sha256":"%s"}\n' "$CHAINCODE_LABEL" "$CHAINCODE_CODE_HASH" \
        >"$work/metadata.json"
    (cd "$work" && tar -czf code.tar.gz connection.json && tar -czf "$PACKAGE_FILE" metadata.json code.tar.gz)
    rm -rf "$work"
}

# json_text FILE: the file's text as the inside of a JSON string (PEM: newlines as \n).
json_text() {
    awk '{ printf "%s\\n", $0 }' "$1"
}

# orderer_args: the peer CLI's flags to reach the ordering service, trusting its public TLS CA.
orderer_args() {
    node_settings orderer0.ordering
    ORDERER_ARGS="-o $NODE_ADDRESS --tls --cafile $ORG_TLS_CA"
}

# definition ORG: the lifecycle flags of the definition for this code, at the sequence it needs.
# With the code already committed: the committed sequence; new code: the next one (CHAINCODE_SEQUENCE
# overrides). Leaves the peer CLI pointed at ORG's gateway peer, as ORG's admin.
definition() {
    orderer_args
    as_admin "$1"
    committed=$(peer lifecycle chaincode querycommitted --channelID "$CHANNEL_NAME" --name "$CHAINCODE_NAME" 2>/dev/null |
        sed -n 's/^Version: \([^,]*\), Sequence: \([0-9]*\),.*/\1 \2/p') || true
    committed_version=${committed% *}
    committed_sequence=${committed#* }
    if [ -z "$committed" ]; then
        SEQUENCE=1
    elif [ "$committed_version" = "$CHAINCODE_VERSION" ]; then
        SEQUENCE=$committed_sequence
    else
        SEQUENCE=$((committed_sequence + 1))
    fi
    SEQUENCE=${CHAINCODE_SEQUENCE:-$SEQUENCE}
    COMMITTED_SEQUENCE=${committed_sequence:-0}
    DEFINITION="--channelID $CHANNEL_NAME --name $CHAINCODE_NAME --version $CHAINCODE_VERSION --sequence $SEQUENCE"
}

approve() {
    require peer
    org_settings "$1"
    [ "$ORG_KIND" = peer ] || fail "only the peer organisations approve chaincode ($PEER_ORGS)"
    package
    as_admin "$1"
    package_id=$(peer lifecycle chaincode calculatepackageid "$PACKAGE_FILE")
    for node in $ORG_NODES; do
        as_admin "$1" "$node"
        if peer lifecycle chaincode queryinstalled 2>/dev/null | grep -q "Package ID: $package_id,"; then
            log "$package_id already installed on $node"
        else
            log "installing $package_id on $node"
            retry 5 peer lifecycle chaincode install "$PACKAGE_FILE"
        fi
    done
    mkdir -p "$(dirname "$PACKAGE_ID_FILE")"
    printf '%s\n' "$package_id" >"$PACKAGE_ID_FILE"
    definition "$1"
    if peer lifecycle chaincode queryapproved --channelID "$CHANNEL_NAME" --name "$CHAINCODE_NAME" --sequence "$SEQUENCE" \
        2>/dev/null | grep -q "version: $CHAINCODE_VERSION, .*package-id: $package_id,"; then
        log "$ORG_MSP_ID already approved $CHAINCODE_NAME version $CHAINCODE_VERSION sequence $SEQUENCE"
        return
    fi
    log "approving $CHAINCODE_NAME version $CHAINCODE_VERSION sequence $SEQUENCE for $ORG_MSP_ID"
    # shellcheck disable=SC2086 # the argument lists are meant to split
    retry 5 peer lifecycle chaincode approveformyorg $ORDERER_ARGS $DEFINITION \
        --package-id "$package_id" --signature-policy "$ENDORSEMENT_POLICY"
}

commit() {
    require peer
    org=${1:-$COMMIT_ORG}
    definition "$org"
    if [ "$SEQUENCE" -le "$COMMITTED_SEQUENCE" ]; then
        log "$CHAINCODE_NAME version $CHAINCODE_VERSION sequence $SEQUENCE already committed on $CHANNEL_NAME"
        return
    fi
    # Every peer organisation's gateway peer, each reached with its PUBLIC TLS CA.
    peers=""
    for peer_org in $PEER_ORGS; do
        org_settings "$peer_org"
        node_settings "$ORG_GATEWAY_PEER"
        peers="$peers --peerAddresses $NODE_ADDRESS --tlsRootCertFiles $ORG_TLS_CA"
    done
    as_admin "$org"
    # shellcheck disable=SC2086
    readiness=$(peer lifecycle chaincode checkcommitreadiness $DEFINITION --signature-policy "$ENDORSEMENT_POLICY" |
        sed -n 's/^\([A-Za-z]*MSP\): \([a-z]*\)$/\1=\2/p' | tr '\n' ' ')
    log "approvals of $CHAINCODE_NAME version $CHAINCODE_VERSION sequence $SEQUENCE: $readiness"
    tries=5
    case "$readiness" in *=false*) tries=1 ;; esac # not approved: Fabric refuses, once is enough to show it
    log "committing $CHAINCODE_NAME sequence $SEQUENCE on $CHANNEL_NAME as $ORG_MSP_ID"
    # shellcheck disable=SC2086
    retry "$tries" peer lifecycle chaincode commit $ORDERER_ARGS $DEFINITION \
        --signature-policy "$ENDORSEMENT_POLICY" $peers
    for node in $ORG_NODES; do
        as_admin "$org" "$node"
        attempts=0
        until peer lifecycle chaincode querycommitted --channelID "$CHANNEL_NAME" --name "$CHAINCODE_NAME" 2>/dev/null |
            grep -q "Sequence: $SEQUENCE,"; do
            attempts=$((attempts + 1))
            [ "$attempts" -lt 100 ] || fail "$CHAINCODE_NAME sequence $SEQUENCE is not committed on $node"
            sleep 0.1
        done
    done
    log "$CHAINCODE_NAME version $CHAINCODE_VERSION committed at sequence $SEQUENCE"
}

# committed [ORG]: the chaincode definition committed on the channel, as ORG's peer knows it.
committed() {
    as_admin "${1:-$COMMIT_ORG}"
    peer lifecycle chaincode querycommitted --channelID "$CHANNEL_NAME" --name "$CHAINCODE_NAME"
}

deploy() {
    for org in $PEER_ORGS; do
        approve "$org"
    done
    commit
}

# endorsers ORG: wait until ORG's gateway peer's discovery service names every peer of every
# organisation as an endorser of the chaincode: what its gateway needs to collect both endorsements,
# and to fall back on the hospital's second peer (gossip takes a few seconds after the joins).
endorsers() {
    require discover
    expected=""
    for org in $PEER_ORGS; do
        org_settings "$org"
        for node in $ORG_NODES; do
            node_settings "$node"
            expected="$expected $NODE_ADDRESS"
        done
    done
    org_settings "$1"
    node_settings "$ORG_GATEWAY_PEER"
    user=$ORG_ADMIN_DIR/msp
    attempts=0
    # shellcheck disable=SC2086 # one address a word
    until found=$(discover endorsers --channel "$CHANNEL_NAME" --chaincode "$CHAINCODE_NAME" \
        --server "$NODE_ADDRESS" --peerTLSCA "$ORG_TLS_CA" --MSP "$ORG_MSP_ID" \
        --userCert "$user/signcerts/Admin@$ORG-cert.pem" --userKey "$user/keystore/priv_sk" 2>/dev/null) &&
        names_all "$found" $expected; do
        attempts=$((attempts + 1))
        [ "$attempts" -lt 600 ] || fail "$NODE's discovery does not name every organisation's endorsers"
        sleep 0.1
    done
    log "$NODE's gateway can collect both organisations' endorsements"
}

# names_all TEXT WORD...: whether TEXT holds every WORD.
names_all() {
    text=$1
    shift
    for word in "$@"; do
        case "$text" in *"\"$word\""*) ;; *) return 1 ;; esac
    done
}

# --- each organisation's chaincode service -----------------------------------------------------------

run_chaincode() {
    org_settings "${1:-}"
    [ "$ORG_KIND" = peer ] || fail "usage: $0 chaincode hospital|research"
    [ -n "$CHAINCODE_CODE_HASH" ] || fail "no chaincode code hash: is CHAINCODE_DIR ($CHAINCODE_DIR) there?"
    attempts=0
    while [ ! -s "$PACKAGE_ID_FILE" ]; do
        attempts=$((attempts + 1))
        [ "$attempts" -lt 600 ] || fail "no package id in $PACKAGE_ID_FILE: run '$0 approve $ORG' first"
        sleep 1
    done
    CHAINCODE_ID=$(cat "$PACKAGE_ID_FILE")
    export CHAINCODE_ID
    export CHAINCODE_SERVER_ADDRESS="${CHAINCODE_SERVER_ADDRESS:-$NETWORK_LISTEN_HOST:$ORG_CHAINCODE_PORT}"
    if [ "$CHAINCODE_TLS" = true ]; then
        tls=${CHAINCODE_TLS_DIR:-$ORG_HOME/peers/chaincode.$ORG/tls}
        export CHAINCODE_TLS_KEY="$tls/server.key"
        export CHAINCODE_TLS_CERT="$tls/server.crt"
        # Only a certificate of this organisation's TLS CA may connect: its own peers.
        export CHAINCODE_CLIENT_CA_CERT="$tls/ca.crt"
    else
        export CHAINCODE_TLS_DISABLED="true"
    fi
    cd "$(dirname "$CHAINCODE_DIR")"
    exec "$PYTHON" -m chaincode.server
}

# export_chaincode ORG DIR [OWNER]: ORG's chaincode service TLS key, certificate and client CA and its
# package id, for a service that runs as another user (the compose stack's chaincode containers).
export_chaincode() {
    org_settings "${1:-}"
    [ -n "${2:-}" ] || fail "usage: $0 export-chaincode ORG DIR [OWNER]"
    mkdir -p "$2"
    cp "$ORG_HOME/peers/chaincode.$ORG/tls/server.key" "$ORG_HOME/peers/chaincode.$ORG/tls/server.crt" \
        "$ORG_HOME/peers/chaincode.$ORG/tls/ca.crt" "$PACKAGE_ID_FILE" "$2/"
    chmod 0600 "$2/server.key"
    own "$2" "${3:-}"
    log "$ORG's chaincode service TLS and package id exported to $2"
}

# --- the client ------------------------------------------------------------------------------------

# gateway_urls [ORG]: every peer organisation's gateway peer, ORG's first (then the others in order).
gateway_urls() {
    endpoints="" listed=""
    for org in ${1:-} $PEER_ORGS; do
        case " $listed " in *" $org "*) continue ;; esac
        listed="$listed $org"
        org_settings "$org"
        node_settings "$ORG_GATEWAY_PEER"
        endpoints="${endpoints:+$endpoints,}$NODE_ADDRESS"
    done
    printf '%s\n' "$endpoints"
}

# gateway_tls_bundle FILE: every peer organisation's public TLS CA certificate, in one PEM file.
gateway_tls_bundle() {
    mkdir -p "$(dirname "$1")"
    for org in $PEER_ORGS; do
        cat "$PUBLIC_DIR/$org/tlsca.pem"
    done >"$1"
}

client_env() {
    client_org=${1:-hospital}
    case "$client_org" in hospital | research) ;; *) fail "usage: $0 client-env [hospital|research]" ;; esac
    urls=$(gateway_urls "$client_org")
    org_settings "$client_org"
    user=$ORG_HOME/users/User1@$client_org/msp
    cat <<EOF
LEDGER_URL=fabric://$urls/$CHANNEL_NAME/$CHAINCODE_NAME
FABRIC_MSP_ID=$ORG_MSP_ID
FABRIC_CERT_PATH=$user/signcerts/User1@$client_org-cert.pem
FABRIC_KEY_PATH=$user/keystore/priv_sk
FABRIC_TLS_CA_PATH=$GATEWAY_TLS_BUNDLE
EOF
}

export_client() {
    [ -n "${1:-}" ] || fail "usage: $0 export-client DIR [OWNER] [ORG]"
    client_org=${3:-hospital}
    case "$client_org" in hospital | research) ;; *) fail "usage: $0 export-client DIR [OWNER] [hospital|research]" ;; esac
    org_settings "$client_org"
    user=$ORG_HOME/users/User1@$client_org/msp
    mkdir -p "$1"
    cp "$user/signcerts/User1@$client_org-cert.pem" "$1/cert.pem"
    cp "$user/keystore/priv_sk" "$1/key.pem"
    chmod 0600 "$1/key.pem"
    gateway_tls_bundle "$1/tls-ca.pem"
    client_env "$client_org" | sed -e "s|^FABRIC_CERT_PATH=.*|FABRIC_CERT_PATH=$1/cert.pem|" \
        -e "s|^FABRIC_KEY_PATH=.*|FABRIC_KEY_PATH=$1/key.pem|" \
        -e "s|^FABRIC_TLS_CA_PATH=.*|FABRIC_TLS_CA_PATH=$1/tls-ca.pem|" >"$1/client.env"
    own "$1" "${2:-}"
    log "client identity exported to $1"
}

# own DIR [OWNER]: hand DIR to OWNER (uid[:gid]) when given.
own() {
    if [ -n "${2:-}" ]; then
        chown -R "$2" "$1"
    fi
}

# --- native: everything as local processes -----------------------------------------------------------

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

# start NAME ARGS...: run `fabric.sh ARGS...` in the background, its pid in $RUN_DIR/NAME.pid. Its log is
# appended to: a node started again keeps what it said before it stopped.
start() {
    name=$1
    shift
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    nohup sh "$NETWORK_SCRIPTS_DIR/fabric.sh" "$@" >>"$LOG_DIR/$name.log" 2>&1 &
    echo $! >"$RUN_DIR/$name.pid"
}

# start_node NODE: NODE in the background, as `up` starts it, once it listens (its admin port, for an orderer).
start_node() {
    node_settings "$1"
    start "$1" node "$1"
    wait_for_port "$1" "$NODE_HOST" "${NODE_ADMIN_PORT:-$NODE_PORT}"
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

all_nodes() {
    # shellcheck disable=SC2086 # one node a line
    printf '%s\n' $ORDERING_NODES $HOSPITAL_NODES $RESEARCH_NODES
}

up() {
    # A half-started network is stopped again; its logs stay in $LOG_DIR.
    # shellcheck disable=SC2154 # status is assigned inside the trap
    trap 'status=$?; [ "$status" -eq 0 ] || down; exit "$status"' EXIT
    prepare
    for node in $(all_nodes); do
        start "$node" node "$node"
    done
    for node in $(all_nodes); do
        node_settings "$node"
        wait_for_port "$node" "$NODE_HOST" "${NODE_ADMIN_PORT:-$NODE_PORT}"
    done
    # Each organisation's admin steps in a subshell: the CLI settings they export (an admin's MSP
    # folder) must not reach the processes started after them.
    for org in ordering $PEER_ORGS; do
        (join "$org")
    done
    (deploy)
    for org in $PEER_ORGS; do
        org_settings "$org"
        start "chaincode.$org" chaincode "$org"
    done
    for org in $PEER_ORGS; do
        org_settings "$org"
        wait_for_port "chaincode.$org" "$ORG_CHAINCODE_HOST" "$ORG_CHAINCODE_PORT"
        endorsers "$org"
    done
    gateway_tls_bundle "$GATEWAY_TLS_BUNDLE"
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
prepare-org) prepare_org "${2:-}" ;;
genesis) genesis ;;
prepare) prepare ;;
node) run_node "${2:-}" ;;
start-node) start_node "${2:-}" ;;
join) join "${2:-}" ;;
approve) approve "${2:-}" ;;
commit) commit "${2:-}" ;;
committed) committed "${2:-}" ;;
deploy) deploy ;;
endorsers) endorsers "${2:-}" ;;
chaincode) run_chaincode "${2:-}" ;;
client-env) client_env "${2:-}" ;;
export-client) export_client "${2:-}" "${3:-}" "${4:-}" ;;
export-chaincode) export_chaincode "${2:-}" "${3:-}" "${4:-}" ;;
*)
    sed -n '2,37s/^# \{0,1\}//p' "$0" >&2
    exit 2
    ;;
esac
