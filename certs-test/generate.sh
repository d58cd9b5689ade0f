#!/usr/bin/env bash
# Remakes the whole Lienthong test PKI with the openssl CLI. One run replaces
# every file below ca/, gateway/, admin/, agencies/, signers/ and bad/.
# The output is committed; it is for tests and the dev config only.
set -euo pipefail
cd "$(dirname "$0")"

# Fifty years: long enough that the committed files never expire under us.
DAYS=18250

rm -rf state ca gateway admin agencies signers bad
mkdir -p ca gateway admin agencies signers bad
for ca in root agency; do
  mkdir -p "state/$ca/newcerts"
  : > "state/$ca/index.txt"
  echo 1000 > "state/$ca/serial"
  echo 1000 > "state/$ca/crlnumber"
done

# new_key FILE [BITS]: an RSA key in PKCS#8 PEM.
new_key() {
  openssl genpkey -quiet -algorithm RSA -pkeyopt "rsa_keygen_bits:${2:-2048}" -out "$1"
  chmod 600 "$1"
}

# issue CA EXT SUBJECT KEY OUT [extra `openssl ca` args...]
issue() {
  local ca=$1 ext=$2 subject=$3 key=$4 out=$5
  shift 5
  local csr
  csr=$(mktemp)
  openssl req -new -config openssl.cnf -key "$key" -subj "$subject" -utf8 -out "$csr"
  openssl ca -batch -notext -config openssl.cnf -name "$ca" -extensions "$ext" \
    -in "$csr" -out "$out" "$@" 2>/dev/null
  rm -f "$csr"
}

echo "root and intermediate"
new_key ca/root.key
openssl req -new -x509 -config openssl.cnf -key ca/root.key -days "$DAYS" -sha256 \
  -extensions v3_root -utf8 \
  -subj "/C=VN/O=Lienthong Test/CN=Lienthong Test Root CA" -out ca/root.crt
new_key ca/agency-ca.key
issue ca_root v3_intermediate "/C=VN/O=Lienthong Test/CN=Lienthong Test Agency CA" \
  ca/agency-ca.key ca/agency-ca.crt -days "$DAYS"

echo "gateway and admin"
new_key gateway/server.key
issue ca_root v3_server "/C=VN/O=Lienthong Test/CN=localhost" \
  gateway/server.key gateway/server.crt -days "$DAYS"
new_key gateway/signing.key
issue ca_root v3_signer "/C=VN/O=Lienthong Test/CN=Lienthong Test Gateway Receipts" \
  gateway/signing.key gateway/signing.crt -days "$DAYS"
new_key admin/admin.key
issue ca_root v3_client "/C=VN/O=Lienthong Test/CN=Lienthong Test Administrator" \
  admin/admin.key admin/admin.crt -days "$DAYS"

# Agencies: file name, org code, name. The communes belong to the district.
AGENCIES=(
  "department|000.00.12.H56|Sở Tài chính"
  "district|000.00.31.H56|UBND huyện Diên Khánh"
  "commune-a|000.01.31.H56|UBND xã Diên An"
  "commune-b|000.02.31.H56|UBND xã Diên Bình"
  "treasury|000.00.90.H56|Kho bạc Nhà nước tỉnh"
  "bank|000.00.91.H56|Ngân hàng Phát triển chi nhánh tỉnh"
  "unregistered|000.00.99.H56|Cơ quan chưa đăng ký"
)
echo "agency client certificates"
for entry in "${AGENCIES[@]}"; do
  IFS='|' read -r file code name <<<"$entry"
  new_key "agencies/$file.key"
  issue ca_agency v3_client "/C=VN/O=$name/OU=$code/CN=$name (TLS)" \
    "agencies/$file.key" "agencies/$file.crt" -days "$DAYS"
done

# Signers: agency file, role, person or unit.
SIGNERS=(
  "department|organization|Sở Tài chính"
  "department|head|Nguyễn Văn Giám Đốc"
  "district|organization|UBND huyện Diên Khánh"
  "district|head|Trần Thị Chủ Tịch"
  "commune-a|organization|UBND xã Diên An"
  "commune-a|account-owner|Lê Văn Chủ Tài Khoản"
  "commune-a|chief-accountant|Phạm Thị Kế Toán"
  "commune-b|organization|UBND xã Diên Bình"
  "commune-b|account-owner|Hoàng Văn Chủ Tài Khoản"
  "commune-b|chief-accountant|Võ Thị Kế Toán"
  "treasury|organization|Kho bạc Nhà nước tỉnh"
  "bank|organization|Ngân hàng Phát triển chi nhánh tỉnh"
  "unregistered|organization|Cơ quan chưa đăng ký"
)
echo "signer certificates"
for entry in "${SIGNERS[@]}"; do
  IFS='|' read -r agency role name <<<"$entry"
  new_key "signers/$agency-$role.key"
  issue ca_agency v3_signer "/C=VN/O=$agency/OU=$role/CN=$name" \
    "signers/$agency-$role.key" "signers/$agency-$role.crt" -days "$DAYS"
done

echo "bad cases"
new_key bad/expired.key
issue ca_agency v3_signer "/C=VN/CN=Expired Signer" bad/expired.key bad/expired.crt \
  -startdate 20000101000000Z -enddate 20010101000000Z
new_key bad/not-yet-valid.key
issue ca_agency v3_signer "/C=VN/CN=Not Yet Valid Signer" bad/not-yet-valid.key \
  bad/not-yet-valid.crt -startdate 20900101000000Z -enddate 21000101000000Z
new_key bad/revoked.key
issue ca_agency v3_signer "/C=VN/CN=Revoked Signer" bad/revoked.key bad/revoked.crt -days "$DAYS"
new_key bad/wrong-key-usage.key
issue ca_agency v3_wrong_key_usage "/C=VN/CN=Wrong Key Usage Signer" bad/wrong-key-usage.key \
  bad/wrong-key-usage.crt -days "$DAYS"
new_key bad/weak-key.key 1024
issue ca_agency v3_signer "/C=VN/CN=Weak Key Signer" bad/weak-key.key bad/weak-key.crt -days "$DAYS"
new_key bad/weak-hash.key
issue ca_agency v3_signer "/C=VN/CN=Weak Hash Signer" bad/weak-hash.key bad/weak-hash.crt \
  -days "$DAYS" -md sha1
new_key bad/self-signed.key
openssl req -new -x509 -config openssl.cnf -key bad/self-signed.key -days "$DAYS" -sha256 \
  -extensions v3_self_signed -utf8 -subj "/C=VN/CN=Self Signed Signer" -out bad/self-signed.crt

echo "revocation lists"
openssl ca -batch -config openssl.cnf -name ca_agency -revoke bad/revoked.crt \
  -crl_reason keyCompromise 2>/dev/null
openssl ca -batch -config openssl.cnf -name ca_agency -gencrl -crldays "$DAYS" \
  -out ca/agency-ca.crl 2>/dev/null
openssl ca -batch -config openssl.cnf -name ca_root -gencrl -crldays "$DAYS" \
  -out ca/root.crl 2>/dev/null

# The bundle the gateway trusts for client certificates (agencies and admin).
cat ca/agency-ca.crt ca/root.crt > ca/client-ca.pem

bash federation/generate.sh
rm -rf state
echo "checking"
openssl verify -CAfile ca/root.crt -untrusted ca/agency-ca.crt signers/commune-a-chief-accountant.crt >/dev/null
openssl verify -crl_check -CAfile <(cat ca/root.crt ca/agency-ca.crl) -untrusted ca/agency-ca.crt \
  bad/revoked.crt >/dev/null 2>&1 && { echo "revoked certificate verified" >&2; exit 1; }
echo "test PKI written to $(pwd)"
