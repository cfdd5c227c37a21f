#!/usr/bin/env bash
# The device PKI of the gateway lab, made with openssl alone (an implementation
# independent of the gateway's parser): a root CA, an issuing CA, device certificates for
# every case of the certificate matrix, and base + delta CRLs as AD CS publishes them
# (CRL numbers shared by base and delta, the delta named with a '+').
#
#   gateway-pki.sh make DIR [CRL_BASE_URL]    everything, fresh
#   gateway-pki.sh revoke DIR NAME base|delta|hold|remove
#   gateway-pki.sh publish DIR [DAYS]         new base and delta CRLs of both CAs
#
# Files: DIR/{root,issuing,other-root}.pem, DIR/chain.pem (issuing + root: the trust
# anchors), DIR/dev/NAME.{pem,key}, DIR/crl/{root.crl,issuing.crl,issuing+.crl}.
set -euo pipefail

die() { echo "gateway-pki: $*" >&2; exit 1; }

cnf() { # cnf DIR CA DB : the openssl ca configuration of CA with index DB
    cat <<EOF
[ca]
default_ca = this
[this]
dir = $1/$2
database = $1/$2/$3
new_certs_dir = $1/$2/new
certificate = $1/$2.pem
private_key = $1/$2.key
serial = $1/$2/serial
crlnumber = $1/$2/crlnumber
default_md = sha256
default_days = 3650
default_crl_days = ${CRL_DAYS:-7}
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[crl_base]
authorityKeyIdentifier = keyid:always
[crl_delta]
authorityKeyIdentifier = keyid:always
2.5.29.27 = critical, ASN1:INTEGER:@base_number
EOF
}

ca_conf() { # ca_conf DIR CA DB -> file
    local f="$1/$2/$3.cnf"
    cnf "$1" "$2" "$3" > "$f"
    echo "$f"
}

issue() { # issue DIR CA NAME SAN EKU CDP [extra openssl ca args...]
    local dir=$1 ca=$2 name=$3 san=$4 eku=$5 cdp=$6; shift 6
    local ext="$dir/dev/$name.ext"
    {
        echo "[x]"
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature, keyEncipherment"
        echo "authorityKeyIdentifier = keyid"
        echo "subjectKeyIdentifier = hash"
        [ -n "$san" ] && echo "subjectAltName = $san"
        [ -n "$eku" ] && echo "extendedKeyUsage = $eku"
        [ -n "$cdp" ] && echo "crlDistributionPoints = $cdp"
        [ -n "$cdp" ] && [ "$ca" = issuing ] && echo "freshestCRL = URI:${DELTA_URL:-$BASE_URL/issuing+.crl}"
    } > "$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/dev/$name.key" \
        -subj "/CN=$name" -out "$dir/dev/$name.csr" 2>/dev/null
    openssl ca -batch -notext -config "$(ca_conf "$dir" "$ca" index.txt)" -in "$dir/dev/$name.csr" \
        -out "$dir/dev/$name.pem" -extfile "$ext" -extensions x "$@" 2>"$dir/dev/$name.log" \
        || { cat "$dir/dev/$name.log" >&2; die "issuing $name failed"; }
}

new_ca() { # new_ca DIR NAME SUBJECT [PARENT]
    local dir=$1 name=$2 subj=$3 parent=${4:-}
    mkdir -p "$dir/$name/new"
    : > "$dir/$name/index.txt"; : > "$dir/$name/delta.txt"
    echo "unique_subject = no" > "$dir/$name/index.txt.attr"
    echo "unique_subject = no" > "$dir/$name/delta.txt.attr"
    openssl rand -hex 8 > "$dir/$name/serial"
    echo 01 > "$dir/$name/crlnumber"
    local ext="$dir/$name.ext"
    {
        echo "[x]"
        echo "basicConstraints = critical, CA:TRUE"
        echo "keyUsage = critical, keyCertSign, cRLSign"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid"
        [ -n "$parent" ] && echo "crlDistributionPoints = URI:$BASE_URL/$parent.crl"
    } > "$ext"
    if [ -z "$parent" ]; then
        openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/$name.key" \
            -subj "$subj" -days 3650 -out "$dir/$name.pem" -extensions x -config <(cat "$ext"; echo "[req]"; echo "distinguished_name=dn"; echo "[dn]") 2>/dev/null
    else
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/$name.key" \
            -subj "$subj" -out "$dir/$name.csr" 2>/dev/null
        openssl ca -batch -notext -config "$(ca_conf "$dir" "$parent" index.txt)" -in "$dir/$name.csr" \
            -out "$dir/$name.pem" -extfile "$ext" -extensions x 2>"$dir/$name.log" \
            || { cat "$dir/$name.log" >&2; die "issuing CA $name failed"; }
    fi
}

publish() { # publish DIR : base and delta CRLs of every CA (numbers shared, as AD CS does)
    local dir=$1 ca base
    mkdir -p "$dir/crl"
    for ca in root issuing issuing2 other-root; do
        [ -d "$dir/$ca" ] || continue
        base=$(cat "$dir/$ca/crlnumber")
        openssl ca -gencrl -config "$(ca_conf "$dir" "$ca" index.txt)" -crlexts crl_base ${CRL_SECS:+-crlsec "$CRL_SECS"} \
            -out "$dir/crl/$ca.pem.crl" 2>/dev/null || die "base CRL of $ca"
        openssl crl -in "$dir/crl/$ca.pem.crl" -outform DER -out "$dir/crl/$ca.crl.new"
        mv "$dir/crl/$ca.crl.new" "$dir/crl/$ca.crl"
        if [ "$ca" = issuing ]; then
            # The delta names the base it extends; openssl takes the number from a section.
            local c
            c=$(ca_conf "$dir" "$ca" delta.txt)
            sed -i "s/ASN1:INTEGER:@base_number/ASN1:INTEGER:$((16#$base))/" "$c"
            openssl ca -gencrl -config "$c" -crlexts crl_delta ${CRL_SECS:+-crlsec "$CRL_SECS"} -out "$dir/crl/$ca+.pem.crl" 2>/dev/null \
                || die "delta CRL of $ca"
            openssl crl -in "$dir/crl/$ca+.pem.crl" -outform DER -out "$dir/crl/$ca+.crl.new"
            mv "$dir/crl/$ca+.crl.new" "$dir/crl/$ca+.crl"
        fi
    done
}

revoke() { # revoke DIR NAME base|delta|hold|remove
    local dir=$1 name=$2 how=$3 db reason
    case $how in
        base) db=index.txt; reason=keyCompromise ;;
        delta) db=delta.txt; reason=keyCompromise ;;
        hold) db=index.txt; reason=certificateHold ;;
        remove) db=delta.txt; reason=removeFromCRL ;;
        *) die "revoke: base, delta, hold or remove" ;;
    esac
    local cert="$dir/dev/$name.pem" ca=issuing
    [ -f "$cert" ] || { cert="$dir/$name.pem"; ca=root; }
    [ -f "$cert" ] || die "no certificate $name"
    if [ "$how" = hold ]; then
        openssl ca -config "$(ca_conf "$dir" "$ca" "$db")" -revoke "$cert" -crl_hold 1.2.840.10040.2.2 2>/dev/null \
            || die "revoke $name"
    else
        openssl ca -config "$(ca_conf "$dir" "$ca" "$db")" -revoke "$cert" -crl_reason "$reason" 2>/dev/null \
            || die "revoke $name"
    fi
}

make_all() {
    local dir=$1
    BASE_URL=${2:-http://crl.lab.test/pki}
    rm -rf "$dir"; mkdir -p "$dir/dev"
    new_ca "$dir" root "/O=Lab/CN=Lab Root CA"
    new_ca "$dir" issuing "/O=Lab/CN=Lab Issuing CA" root
    new_ca "$dir" other-root "/O=Elsewhere/CN=Other Root CA"
    # The issuing CA renewed with a new key and the same name (AD CS publishes its CRL under
    # another file name); devices of the old and the new key coexist.
    new_ca "$dir" issuing2 "/O=Lab/CN=Lab Issuing CA" root
    cat "$dir/issuing.pem" "$dir/issuing2.pem" "$dir/root.pem" > "$dir/chain.pem"
    local cdp="URI:$BASE_URL/issuing.crl"
    local ldap="URI:ldap:///CN=Lab%20Issuing%20CA%2CCN=CDP%2CCN=Public%20Key%20Services%2CDC=lab%2CDC=test?certificateRevocationList?base"
    local upn="otherName:1.3.6.1.4.1.311.20.2.3;UTF8:"
    issue "$dir" issuing alice "${upn}alice@lab.test, email:alice@lab.test" clientAuth "$ldap, $cdp"
    issue "$dir" issuing bob "${upn}bob@lab.test" clientAuth "$cdp"
    issue "$dir" issuing carol "${upn}carol@lab.test" clientAuth "$cdp"
    issue "$dir" issuing dave "${upn}dave@lab.test" clientAuth "$cdp"
    issue "$dir" issuing nobody "${upn}nobody@lab.test" clientAuth "$cdp"
    issue "$dir" issuing noupn "email:alice@lab.test" clientAuth "$cdp"
    issue "$dir" issuing twoupn "${upn}alice@lab.test, ${upn}bob@lab.test" clientAuth "$cdp"
    issue "$dir" issuing serverauth "${upn}alice@lab.test" serverAuth "$cdp"
    issue "$dir" issuing noeku "${upn}alice@lab.test" "" "$cdp"
    issue "$dir" issuing ldaponly "${upn}alice@lab.test" clientAuth "$ldap"
    issue "$dir" issuing unreachable "${upn}alice@lab.test" clientAuth "URI:http://10.89.0.99/pki/issuing.crl"
    issue "$dir" issuing altsuffix "${upn}alice@corp.example" clientAuth "$cdp"
    issue "$dir" issuing expired "${upn}alice@lab.test" clientAuth "$cdp" -startdate 20200101000000Z -enddate 20210101000000Z
    issue "$dir" issuing notyet "${upn}alice@lab.test" clientAuth "$cdp" -startdate 20400101000000Z -enddate 20410101000000Z
    issue "$dir" other-root wrongca "${upn}alice@lab.test" clientAuth ""
    # The delta CRL behind a web server that refuses '+' (IIS without allowDoubleEscaping).
    DELTA_URL=${BASE_URL%/pki}/iis/issuing+.crl issue "$dir" issuing iisdelta "${upn}alice@lab.test" clientAuth "$cdp"
    issue "$dir" issuing2 renewed "${upn}alice@lab.test" clientAuth "URI:$BASE_URL/issuing2.crl"
    # A CDP whose CRL does not verify (the lab serves a copy with a damaged signature).
    issue "$dir" issuing badsig "${upn}alice@lab.test" clientAuth "URI:$BASE_URL/badsig.crl"
    # alice's second device, revoked while connected by the lab.
    issue "$dir" issuing erin "${upn}alice@lab.test" clientAuth "$cdp"
    # Self-signed, with alice's UPN.
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/dev/selfsigned.key" \
        -subj "/CN=alice" -days 365 -out "$dir/dev/selfsigned.pem" \
        -addext "subjectAltName=${upn}alice@lab.test" -addext "extendedKeyUsage=clientAuth" \
        -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null
    revoke "$dir" bob base
    revoke "$dir" dave hold
    publish "$dir"
    # carol is revoked after the base was published: only the next delta names her, and
    # dave's hold is lifted (removeFromCRL) in that delta.
    revoke "$dir" carol delta
    revoke "$dir" dave remove
    publish "$dir"
}

case ${1:-} in
    make) [ $# -ge 2 ] || die "make DIR [CRL_BASE_URL]"; make_all "$2" "${3:-}" ;;
    revoke) [ $# = 4 ] || die "revoke DIR NAME base|delta|hold|remove"; revoke "$2" "$3" "$4" ;;
    publish) [ $# -ge 2 ] || die "publish DIR [DAYS]"; CRL_DAYS=${3:-7} publish "$2" ;;
    *) die "usage: gateway-pki.sh make|revoke|publish DIR ..." ;;
esac
