#!/usr/bin/env bash
# Remakes the federation test PKI: three gateways (province H56, the
# national hub, province H17), each with its own CA, a gateway certificate
# it presents as server and as client to its peers (serverAuth + clientAuth,
# SAN localhost/127.0.0.1 and urn:lienthong:gw:ID) and a receipt-signing
# certificate; an impostor certificate issued by the hub's CA; and a client
# certificate for one agency of H17, issued by the shared agency CA. Called
# by ../generate.sh; it may be run alone (it only needs ../ca/agency-ca.*).
set -euo pipefail
cd "$(dirname "$0")"

DAYS=18250
rm -rf h56 hub h17 state
mkdir -p state

new_key() {
  openssl genpkey -quiet -algorithm RSA -pkeyopt "rsa_keygen_bits:2048" -out "$1"
  chmod 600 "$1"
}

# ext_file ID PROFILE: the extensions of one certificate.
ext_file() {
  local file=state/$1-$2.ext
  case $2 in
    gateway)
      cat > "$file" <<EXT
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1, URI:urn:lienthong:gw:$1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EXT
      ;;
    receipts)
      cat > "$file" <<EXT
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EXT
      ;;
    client)
      cat > "$file" <<EXT
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EXT
      ;;
  esac
  echo "$file"
}

# sign CA_DIR/CA_NAME KEY SUBJECT OUT EXTFILE
sign() {
  local ca=$1 key=$2 subject=$3 out=$4 ext=$5 csr
  csr=$(mktemp)
  openssl req -new -key "$key" -subj "$subject" -utf8 -out "$csr"
  openssl x509 -req -in "$csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
    -days "$DAYS" -sha256 -extfile "$ext" -out "$out" 2>/dev/null
  rm -f "$csr"
}

for pair in "h56|VN:GOV:H56|Tỉnh Khánh Hòa" "hub|VN:GOV:HUB|Trục liên thông quốc gia" "h17|VN:GOV:H17|Tỉnh Thái Bình"; do
  IFS='|' read -r dir id name <<< "$pair"
  mkdir -p "$dir"
  new_key "$dir/ca.key"
  openssl req -new -x509 -key "$dir/ca.key" -days "$DAYS" -sha256 -utf8 \
    -subj "/C=VN/O=$name/CN=$id Gateway CA" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt"
  new_key "$dir/gateway.key"
  sign "$dir/ca" "$dir/gateway.key" "/C=VN/O=$name/CN=$id" "$dir/gateway.crt" "$(ext_file "$id" gateway)"
  new_key "$dir/receipts.key"
  sign "$dir/ca" "$dir/receipts.key" "/C=VN/O=$name/CN=$id Receipts" "$dir/receipts.crt" "$(ext_file "$id" receipts)"
  openssl x509 -in "$dir/gateway.crt" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f' > "$dir/gateway.sha256"
done

# A certificate of the hub's CA that is not the pinned one.
new_key hub/impostor.key
sign hub/ca hub/impostor.key "/C=VN/O=Impostor/CN=VN:GOV:HUB" hub/impostor.crt "$(ext_file VN:GOV:HUB gateway)"

# An agency of H17 (Sở Tài chính Thái Bình), under the shared agency CA.
new_key h17/department.key
sign ../ca/agency-ca h17/department.key "/C=VN/O=Sở Tài chính Thái Bình/CN=000.00.12.H17" \
  h17/department.crt "$(ext_file 000.00.12.H17 client)"

rm -rf state ../ca/agency-ca.srl h56/ca.srl hub/ca.srl h17/ca.srl
for dir in h56 hub h17; do
  openssl verify -CAfile "$dir/ca.crt" "$dir/gateway.crt" >/dev/null
done
openssl verify -CAfile ../ca/root.crt -untrusted ../ca/agency-ca.crt h17/department.crt >/dev/null
echo "federation test PKI written to $(pwd)"
