//! Protocol numbers as newtypes with named constants. An unknown number is a value like
//! any other (it prints as its number), never an error: a monitor must report what it saw.

macro_rules! named_numbers {
    ($(#[$meta:meta])* $ty:ident($inner:ty), prefix $prefix:literal { $($konst:ident = $val:literal => $name:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $ty(pub $inner);

        impl $ty {
            $(pub const $konst: $ty = $ty($val);)*

            /// What an unknown number is called: "PREFIX-N".
            pub const PREFIX: &'static str = $prefix;

            /// Every standard name in this table.
            pub const KNOWN: &'static [&'static str] = &[$($name,)*];

            /// The standard name, or None for a number this table does not know.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some($name),)*
                    _ => None,
                }
            }

            /// The inverse of `Display`: a standard name, or "PREFIX-N".
            pub fn from_name(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(Self($val)),)*
                    _ => s.strip_prefix($prefix).and_then(|r| r.strip_prefix('-')).and_then(|n| n.parse().ok()).map(Self),
                }
            }

            pub const ALL: &'static [$ty] = &[$($ty($val),)*];
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}({})", n, self.0),
                    None => write!(f, "{}({})", stringify!($ty), self.0),
                }
            }
        }

        /// The standard name, or "PREFIX-N" for an unknown number.
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}-{}", $prefix, self.0),
                }
            }
        }
    };
}

named_numbers! {
    /// msg-type (RFC 4120 section 5.10 / 7.5.7).
    MessageType(i32), prefix "msg-type" {
        AS_REQ = 10 => "AS-REQ",
        AS_REP = 11 => "AS-REP",
        TGS_REQ = 12 => "TGS-REQ",
        TGS_REP = 13 => "TGS-REP",
        AP_REQ = 14 => "AP-REQ",
        AP_REP = 15 => "AP-REP",
        KRB_SAFE = 20 => "KRB-SAFE",
        KRB_PRIV = 21 => "KRB-PRIV",
        KRB_CRED = 22 => "KRB-CRED",
        KRB_ERROR = 30 => "KRB-ERROR",
    }
}

impl MessageType {
    pub fn is_kdc_request(self) -> bool {
        matches!(self, Self::AS_REQ | Self::TGS_REQ)
    }
    pub fn is_kdc_reply(self) -> bool {
        matches!(self, Self::AS_REP | Self::TGS_REP | Self::KRB_ERROR)
    }
}

named_numbers! {
    /// error-code (RFC 4120 7.5.9, RFC 4556 PKINIT, RFC 6113 FAST, RFC 6806, RFC 8636).
    ErrorCode(i32), prefix "error" {
        KDC_ERR_NONE = 0 => "KDC_ERR_NONE",
        KDC_ERR_NAME_EXP = 1 => "KDC_ERR_NAME_EXP",
        KDC_ERR_SERVICE_EXP = 2 => "KDC_ERR_SERVICE_EXP",
        KDC_ERR_BAD_PVNO = 3 => "KDC_ERR_BAD_PVNO",
        KDC_ERR_C_OLD_MAST_KVNO = 4 => "KDC_ERR_C_OLD_MAST_KVNO",
        KDC_ERR_S_OLD_MAST_KVNO = 5 => "KDC_ERR_S_OLD_MAST_KVNO",
        KDC_ERR_C_PRINCIPAL_UNKNOWN = 6 => "KDC_ERR_C_PRINCIPAL_UNKNOWN",
        KDC_ERR_S_PRINCIPAL_UNKNOWN = 7 => "KDC_ERR_S_PRINCIPAL_UNKNOWN",
        KDC_ERR_PRINCIPAL_NOT_UNIQUE = 8 => "KDC_ERR_PRINCIPAL_NOT_UNIQUE",
        KDC_ERR_NULL_KEY = 9 => "KDC_ERR_NULL_KEY",
        KDC_ERR_CANNOT_POSTDATE = 10 => "KDC_ERR_CANNOT_POSTDATE",
        KDC_ERR_NEVER_VALID = 11 => "KDC_ERR_NEVER_VALID",
        KDC_ERR_POLICY = 12 => "KDC_ERR_POLICY",
        KDC_ERR_BADOPTION = 13 => "KDC_ERR_BADOPTION",
        KDC_ERR_ETYPE_NOSUPP = 14 => "KDC_ERR_ETYPE_NOSUPP",
        KDC_ERR_SUMTYPE_NOSUPP = 15 => "KDC_ERR_SUMTYPE_NOSUPP",
        KDC_ERR_PADATA_TYPE_NOSUPP = 16 => "KDC_ERR_PADATA_TYPE_NOSUPP",
        KDC_ERR_TRTYPE_NOSUPP = 17 => "KDC_ERR_TRTYPE_NOSUPP",
        KDC_ERR_CLIENT_REVOKED = 18 => "KDC_ERR_CLIENT_REVOKED",
        KDC_ERR_SERVICE_REVOKED = 19 => "KDC_ERR_SERVICE_REVOKED",
        KDC_ERR_TGT_REVOKED = 20 => "KDC_ERR_TGT_REVOKED",
        KDC_ERR_CLIENT_NOTYET = 21 => "KDC_ERR_CLIENT_NOTYET",
        KDC_ERR_SERVICE_NOTYET = 22 => "KDC_ERR_SERVICE_NOTYET",
        KDC_ERR_KEY_EXPIRED = 23 => "KDC_ERR_KEY_EXPIRED",
        KDC_ERR_PREAUTH_FAILED = 24 => "KDC_ERR_PREAUTH_FAILED",
        KDC_ERR_PREAUTH_REQUIRED = 25 => "KDC_ERR_PREAUTH_REQUIRED",
        KDC_ERR_SERVER_NOMATCH = 26 => "KDC_ERR_SERVER_NOMATCH",
        KDC_ERR_MUST_USE_USER2USER = 27 => "KDC_ERR_MUST_USE_USER2USER",
        KDC_ERR_PATH_NOT_ACCEPTED = 28 => "KDC_ERR_PATH_NOT_ACCEPTED",
        KDC_ERR_SVC_UNAVAILABLE = 29 => "KDC_ERR_SVC_UNAVAILABLE",
        KRB_AP_ERR_BAD_INTEGRITY = 31 => "KRB_AP_ERR_BAD_INTEGRITY",
        KRB_AP_ERR_TKT_EXPIRED = 32 => "KRB_AP_ERR_TKT_EXPIRED",
        KRB_AP_ERR_TKT_NYV = 33 => "KRB_AP_ERR_TKT_NYV",
        KRB_AP_ERR_REPEAT = 34 => "KRB_AP_ERR_REPEAT",
        KRB_AP_ERR_NOT_US = 35 => "KRB_AP_ERR_NOT_US",
        KRB_AP_ERR_BADMATCH = 36 => "KRB_AP_ERR_BADMATCH",
        KRB_AP_ERR_SKEW = 37 => "KRB_AP_ERR_SKEW",
        KRB_AP_ERR_BADADDR = 38 => "KRB_AP_ERR_BADADDR",
        KRB_AP_ERR_BADVERSION = 39 => "KRB_AP_ERR_BADVERSION",
        KRB_AP_ERR_MSG_TYPE = 40 => "KRB_AP_ERR_MSG_TYPE",
        KRB_AP_ERR_MODIFIED = 41 => "KRB_AP_ERR_MODIFIED",
        KRB_AP_ERR_BADORDER = 42 => "KRB_AP_ERR_BADORDER",
        KRB_AP_ERR_ILL_CR_TKT = 43 => "KRB_AP_ERR_ILL_CR_TKT",
        KRB_AP_ERR_BADKEYVER = 44 => "KRB_AP_ERR_BADKEYVER",
        KRB_AP_ERR_NOKEY = 45 => "KRB_AP_ERR_NOKEY",
        KRB_AP_ERR_MUT_FAIL = 46 => "KRB_AP_ERR_MUT_FAIL",
        KRB_AP_ERR_BADDIRECTION = 47 => "KRB_AP_ERR_BADDIRECTION",
        KRB_AP_ERR_METHOD = 48 => "KRB_AP_ERR_METHOD",
        KRB_AP_ERR_BADSEQ = 49 => "KRB_AP_ERR_BADSEQ",
        KRB_AP_ERR_INAPP_CKSUM = 50 => "KRB_AP_ERR_INAPP_CKSUM",
        KRB_AP_PATH_NOT_ACCEPTED = 51 => "KRB_AP_PATH_NOT_ACCEPTED",
        KRB_ERR_RESPONSE_TOO_BIG = 52 => "KRB_ERR_RESPONSE_TOO_BIG",
        KRB_ERR_GENERIC = 60 => "KRB_ERR_GENERIC",
        KRB_ERR_FIELD_TOOLONG = 61 => "KRB_ERR_FIELD_TOOLONG",
        KDC_ERR_CLIENT_NOT_TRUSTED = 62 => "KDC_ERR_CLIENT_NOT_TRUSTED",
        KDC_ERR_KDC_NOT_TRUSTED = 63 => "KDC_ERR_KDC_NOT_TRUSTED",
        KDC_ERR_INVALID_SIG = 64 => "KDC_ERR_INVALID_SIG",
        KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED = 65 => "KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED",
        KDC_ERR_CERTIFICATE_MISMATCH = 66 => "KDC_ERR_CERTIFICATE_MISMATCH",
        KRB_AP_ERR_NO_TGT = 67 => "KRB_AP_ERR_NO_TGT",
        KDC_ERR_WRONG_REALM = 68 => "KDC_ERR_WRONG_REALM",
        KRB_AP_ERR_USER_TO_USER_REQUIRED = 69 => "KRB_AP_ERR_USER_TO_USER_REQUIRED",
        KDC_ERR_CANT_VERIFY_CERTIFICATE = 70 => "KDC_ERR_CANT_VERIFY_CERTIFICATE",
        KDC_ERR_INVALID_CERTIFICATE = 71 => "KDC_ERR_INVALID_CERTIFICATE",
        KDC_ERR_REVOKED_CERTIFICATE = 72 => "KDC_ERR_REVOKED_CERTIFICATE",
        KDC_ERR_REVOCATION_STATUS_UNKNOWN = 73 => "KDC_ERR_REVOCATION_STATUS_UNKNOWN",
        KDC_ERR_REVOCATION_STATUS_UNAVAILABLE = 74 => "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE",
        KDC_ERR_CLIENT_NAME_MISMATCH = 75 => "KDC_ERR_CLIENT_NAME_MISMATCH",
        KDC_ERR_KDC_NAME_MISMATCH = 76 => "KDC_ERR_KDC_NAME_MISMATCH",
        KDC_ERR_INCONSISTENT_KEY_PURPOSE = 77 => "KDC_ERR_INCONSISTENT_KEY_PURPOSE",
        KDC_ERR_DIGEST_IN_CERT_NOT_ACCEPTED = 78 => "KDC_ERR_DIGEST_IN_CERT_NOT_ACCEPTED",
        KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED = 79 => "KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED",
        KDC_ERR_DIGEST_IN_SIGNED_DATA_NOT_ACCEPTED = 80 => "KDC_ERR_DIGEST_IN_SIGNED_DATA_NOT_ACCEPTED",
        KDC_ERR_PUBLIC_KEY_ENCRYPTION_NOT_SUPPORTED = 81 => "KDC_ERR_PUBLIC_KEY_ENCRYPTION_NOT_SUPPORTED",
        KRB_AP_ERR_IAKERB_KDC_NOT_FOUND = 85 => "KRB_AP_ERR_IAKERB_KDC_NOT_FOUND",
        KRB_AP_ERR_IAKERB_KDC_NO_RESPONSE = 86 => "KRB_AP_ERR_IAKERB_KDC_NO_RESPONSE",
        KDC_ERR_PREAUTH_EXPIRED = 90 => "KDC_ERR_PREAUTH_EXPIRED",
        KDC_ERR_MORE_PREAUTH_DATA_REQUIRED = 91 => "KDC_ERR_MORE_PREAUTH_DATA_REQUIRED",
        KDC_ERR_PREAUTH_BAD_AUTHENTICATION_SET = 92 => "KDC_ERR_PREAUTH_BAD_AUTHENTICATION_SET",
        KDC_ERR_UNKNOWN_CRITICAL_FAST_OPTIONS = 93 => "KDC_ERR_UNKNOWN_CRITICAL_FAST_OPTIONS",
        KDC_ERR_INVALID_HASH_ALG = 94 => "KDC_ERR_INVALID_HASH_ALG",
        KDC_ERR_INVALID_ITERATION_COUNT = 95 => "KDC_ERR_INVALID_ITERATION_COUNT",
        KDC_ERR_NO_ACCEPTABLE_KDF = 100 => "KDC_ERR_NO_ACCEPTABLE_KDF",
    }
}

named_numbers! {
    /// padata-type (RFC 4120 7.5.2, RFC 6113, MS-KILE 2.2, MS-SFU 2.2, RFC 4556, RFC 8070).
    PaDataType(i32), prefix "padata" {
        PA_TGS_REQ = 1 => "PA-TGS-REQ",
        PA_ENC_TIMESTAMP = 2 => "PA-ENC-TIMESTAMP",
        PA_PW_SALT = 3 => "PA-PW-SALT",
        PA_ENC_UNIX_TIME = 5 => "PA-ENC-UNIX-TIME",
        PA_SANDIA_SECUREID = 6 => "PA-SANDIA-SECUREID",
        PA_SESAME = 7 => "PA-SESAME",
        PA_OSF_DCE = 8 => "PA-OSF-DCE",
        PA_CYBERSAFE_SECUREID = 9 => "PA-CYBERSAFE-SECUREID",
        PA_AFS3_SALT = 10 => "PA-AFS3-SALT",
        PA_ETYPE_INFO = 11 => "PA-ETYPE-INFO",
        PA_SAM_CHALLENGE = 12 => "PA-SAM-CHALLENGE",
        PA_SAM_RESPONSE = 13 => "PA-SAM-RESPONSE",
        PA_PK_AS_REQ_OLD = 14 => "PA-PK-AS-REQ-OLD",
        PA_PK_AS_REP_OLD = 15 => "PA-PK-AS-REP-OLD",
        PA_PK_AS_REQ = 16 => "PA-PK-AS-REQ",
        PA_PK_AS_REP = 17 => "PA-PK-AS-REP",
        PA_ETYPE_INFO2 = 19 => "PA-ETYPE-INFO2",
        PA_SVR_REFERRAL_INFO = 20 => "PA-SVR-REFERRAL-INFO",
        PA_SAM_REDIRECT = 21 => "PA-SAM-REDIRECT",
        PA_GET_FROM_TYPED_DATA = 22 => "PA-GET-FROM-TYPED-DATA",
        PA_SAM_ETYPE_INFO = 23 => "PA-SAM-ETYPE-INFO",
        PA_ALT_PRINC = 24 => "PA-ALT-PRINC",
        PA_SERVER_REFERRAL = 25 => "PA-SERVER-REFERRAL",
        PA_SAM_CHALLENGE2 = 30 => "PA-SAM-CHALLENGE2",
        PA_SAM_RESPONSE2 = 31 => "PA-SAM-RESPONSE2",
        PA_EXTRA_TGT = 41 => "PA-EXTRA-TGT",
        TD_PKINIT_CMS_CERTIFICATES = 101 => "TD-PKINIT-CMS-CERTIFICATES",
        TD_KRB_PRINCIPAL = 102 => "TD-KRB-PRINCIPAL",
        TD_KRB_REALM = 103 => "TD-KRB-REALM",
        TD_TRUSTED_CERTIFIERS = 104 => "TD-TRUSTED-CERTIFIERS",
        TD_CERTIFICATE_INDEX = 105 => "TD-CERTIFICATE-INDEX",
        TD_APP_DEFINED_ERROR = 106 => "TD-APP-DEFINED-ERROR",
        TD_REQ_NONCE = 107 => "TD-REQ-NONCE",
        TD_REQ_SEQ = 108 => "TD-REQ-SEQ",
        TD_DH_PARAMETERS = 109 => "TD-DH-PARAMETERS",
        TD_CMS_DIGEST_ALGORITHMS = 111 => "TD-CMS-DIGEST-ALGORITHMS",
        TD_CERT_DIGEST_ALGORITHMS = 112 => "TD-CERT-DIGEST-ALGORITHMS",
        PA_PAC_REQUEST = 128 => "PA-PAC-REQUEST",
        PA_FOR_USER = 129 => "PA-FOR-USER",
        PA_S4U_X509_USER = 130 => "PA-S4U-X509-USER",
        PA_FOR_CHECK_DUPS = 131 => "PA-FOR-CHECK-DUPS",
        PA_AS_CHECKSUM = 132 => "PA-AS-CHECKSUM",
        PA_FX_COOKIE = 133 => "PA-FX-COOKIE",
        PA_AUTHENTICATION_SET = 134 => "PA-AUTHENTICATION-SET",
        PA_AUTH_SET_SELECTED = 135 => "PA-AUTH-SET-SELECTED",
        PA_FX_FAST = 136 => "PA-FX-FAST",
        PA_FX_ERROR = 137 => "PA-FX-ERROR",
        PA_ENCRYPTED_CHALLENGE = 138 => "PA-ENCRYPTED-CHALLENGE",
        PA_OTP_CHALLENGE = 141 => "PA-OTP-CHALLENGE",
        PA_OTP_REQUEST = 142 => "PA-OTP-REQUEST",
        PA_OTP_CONFIRM = 143 => "PA-OTP-CONFIRM",
        PA_OTP_PIN_CHANGE = 144 => "PA-OTP-PIN-CHANGE",
        PA_EPAK_AS_REQ = 145 => "PA-EPAK-AS-REQ",
        PA_EPAK_AS_REP = 146 => "PA-EPAK-AS-REP",
        PA_PKINIT_KX = 147 => "PA-PKINIT-KX",
        PA_PKU2U_NAME = 148 => "PA-PKU2U-NAME",
        PA_REQ_ENC_PA_REP = 149 => "PA-REQ-ENC-PA-REP",
        PA_AS_FRESHNESS = 150 => "PA-AS-FRESHNESS",
        PA_SPAKE = 151 => "PA-SPAKE",
        PA_REDHAT_IDP_OAUTH2 = 152 => "PA-REDHAT-IDP-OAUTH2",
        PA_REDHAT_PASSKEY = 153 => "PA-REDHAT-PASSKEY",
        PA_SUPPORTED_ETYPES = 165 => "PA-SUPPORTED-ETYPES",
        PA_EXTENDED_ERROR = 166 => "PA-EXTENDED-ERROR",
        PA_PAC_OPTIONS = 167 => "PA-PAC-OPTIONS",
        PA_SRP = 250 => "PA-SRP",
    }
}

named_numbers! {
    /// etype (RFC 3961 8, RFC 3962, RFC 4757, RFC 8009, RFC 6803).
    EncryptionType(i32), prefix "etype" {
        DES_CBC_CRC = 1 => "des-cbc-crc",
        DES_CBC_MD4 = 2 => "des-cbc-md4",
        DES_CBC_MD5 = 3 => "des-cbc-md5",
        DES3_CBC_MD5 = 5 => "des3-cbc-md5",
        DES3_CBC_SHA1 = 7 => "des3-cbc-sha1",
        DSA_WITH_SHA1_CMS = 9 => "dsaWithSHA1-CmsOID",
        MD5_WITH_RSA_CMS = 10 => "md5WithRSAEncryption-CmsOID",
        SHA1_WITH_RSA_CMS = 11 => "sha1WithRSAEncryption-CmsOID",
        RC2_CBC_ENV = 12 => "rc2CBC-EnvOID",
        RSA_ENV = 13 => "rsaEncryption-EnvOID",
        RSA_ES_OAEP_ENV = 14 => "rsaES-OAEP-ENV-OID",
        DES_EDE3_CBC_ENV = 15 => "des-ede3-cbc-Env-OID",
        DES3_CBC_SHA1_KD = 16 => "des3-cbc-sha1-kd",
        AES128_CTS_HMAC_SHA1_96 = 17 => "aes128-cts-hmac-sha1-96",
        AES256_CTS_HMAC_SHA1_96 = 18 => "aes256-cts-hmac-sha1-96",
        AES128_CTS_HMAC_SHA256_128 = 19 => "aes128-cts-hmac-sha256-128",
        AES256_CTS_HMAC_SHA384_192 = 20 => "aes256-cts-hmac-sha384-192",
        RC4_HMAC = 23 => "rc4-hmac",
        RC4_HMAC_EXP = 24 => "rc4-hmac-exp",
        CAMELLIA128_CTS_CMAC = 25 => "camellia128-cts-cmac",
        CAMELLIA256_CTS_CMAC = 26 => "camellia256-cts-cmac",
        SUBKEY_KEYMATERIAL = 65 => "subkey-keymaterial",
        RC4_HMAC_OLD_EXP = -135 => "rc4-hmac-old-exp",
    }
}

impl EncryptionType {
    /// Types that RFC 6649 / RFC 8429 deprecate; a request offering only these is weak.
    pub fn is_weak(self) -> bool {
        matches!(self.0, 1 | 2 | 3 | 5 | 7 | 16 | 23 | 24 | -135)
    }
}

named_numbers! {
    /// name-type (RFC 4120 6.2, RFC 6111, MS-KILE).
    NameType(i32), prefix "name-type" {
        NT_UNKNOWN = 0 => "NT-UNKNOWN",
        NT_PRINCIPAL = 1 => "NT-PRINCIPAL",
        NT_SRV_INST = 2 => "NT-SRV-INST",
        NT_SRV_HST = 3 => "NT-SRV-HST",
        NT_SRV_XHST = 4 => "NT-SRV-XHST",
        NT_UID = 5 => "NT-UID",
        NT_X500_PRINCIPAL = 6 => "NT-X500-PRINCIPAL",
        NT_SMTP_NAME = 7 => "NT-SMTP-NAME",
        NT_ENTERPRISE = 10 => "NT-ENTERPRISE",
        NT_WELLKNOWN = 11 => "NT-WELLKNOWN",
        NT_SRV_HST_DOMAIN = 12 => "NT-SRV-HST-DOMAIN",
        NT_MS_PRINCIPAL = -128 => "NT-MS-PRINCIPAL",
        NT_MS_PRINCIPAL_AND_ID = -129 => "NT-MS-PRINCIPAL-AND-ID",
        NT_ENT_PRINCIPAL_AND_ID = -130 => "NT-ENT-PRINCIPAL-AND-ID",
    }
}

named_numbers! {
    /// cksumtype (RFC 3961 8, RFC 4757, RFC 4121).
    ChecksumType(i32), prefix "cksum" {
        CRC32 = 1 => "crc32",
        RSA_MD4 = 2 => "rsa-md4",
        RSA_MD4_DES = 3 => "rsa-md4-des",
        DES_MAC = 4 => "des-mac",
        DES_MAC_K = 5 => "des-mac-k",
        RSA_MD4_DES_K = 6 => "rsa-md4-des-k",
        RSA_MD5 = 7 => "rsa-md5",
        RSA_MD5_DES = 8 => "rsa-md5-des",
        RSA_MD5_DES3 = 9 => "rsa-md5-des3",
        SHA1 = 10 => "sha1",
        HMAC_SHA1_DES3_KD = 12 => "hmac-sha1-des3-kd",
        HMAC_SHA1_DES3 = 13 => "hmac-sha1-des3",
        SHA1_UNKEYED = 14 => "sha1-unkeyed",
        HMAC_SHA1_96_AES128 = 15 => "hmac-sha1-96-aes128",
        HMAC_SHA1_96_AES256 = 16 => "hmac-sha1-96-aes256",
        HMAC_SHA256_128_AES128 = 19 => "hmac-sha256-128-aes128",
        HMAC_SHA384_192_AES256 = 20 => "hmac-sha384-192-aes256",
        GSSAPI = 0x8003 => "gssapi",
        HMAC_MD5 = -138 => "hmac-md5",
    }
}

named_numbers! {
    /// NTSTATUS values that KDCs put into KRB-ERROR e-data (MS-KILE 2.2.1/2.2.2); values from
    /// MS-ERREF 2.3.1 as carried in Samba's libcli/util/ntstatus_err_table.txt.
    NtStatus(u32), prefix "ntstatus" {
        STATUS_SUCCESS = 0x0000_0000 => "STATUS_SUCCESS",
        STATUS_INVALID_PARAMETER = 0xC000_000D => "STATUS_INVALID_PARAMETER",
        STATUS_ACCESS_DENIED = 0xC000_0022 => "STATUS_ACCESS_DENIED",
        STATUS_NO_LOGON_SERVERS = 0xC000_005E => "STATUS_NO_LOGON_SERVERS",
        STATUS_NO_SUCH_LOGON_SESSION = 0xC000_005F => "STATUS_NO_SUCH_LOGON_SESSION",
        STATUS_INVALID_ACCOUNT_NAME = 0xC000_0062 => "STATUS_INVALID_ACCOUNT_NAME",
        STATUS_NO_SUCH_USER = 0xC000_0064 => "STATUS_NO_SUCH_USER",
        STATUS_WRONG_PASSWORD = 0xC000_006A => "STATUS_WRONG_PASSWORD",
        STATUS_PASSWORD_RESTRICTION = 0xC000_006C => "STATUS_PASSWORD_RESTRICTION",
        STATUS_LOGON_FAILURE = 0xC000_006D => "STATUS_LOGON_FAILURE",
        STATUS_ACCOUNT_RESTRICTION = 0xC000_006E => "STATUS_ACCOUNT_RESTRICTION",
        STATUS_INVALID_LOGON_HOURS = 0xC000_006F => "STATUS_INVALID_LOGON_HOURS",
        STATUS_INVALID_WORKSTATION = 0xC000_0070 => "STATUS_INVALID_WORKSTATION",
        STATUS_PASSWORD_EXPIRED = 0xC000_0071 => "STATUS_PASSWORD_EXPIRED",
        STATUS_ACCOUNT_DISABLED = 0xC000_0072 => "STATUS_ACCOUNT_DISABLED",
        STATUS_INSUFFICIENT_RESOURCES = 0xC000_009A => "STATUS_INSUFFICIENT_RESOURCES",
        STATUS_BAD_TOKEN_TYPE = 0xC000_00A8 => "STATUS_BAD_TOKEN_TYPE",
        STATUS_NOT_SUPPORTED = 0xC000_00BB => "STATUS_NOT_SUPPORTED",
        STATUS_INVALID_SERVER_STATE = 0xC000_00DC => "STATUS_INVALID_SERVER_STATE",
        STATUS_NO_SUCH_DOMAIN = 0xC000_00DF => "STATUS_NO_SUCH_DOMAIN",
        STATUS_TIME_DIFFERENCE_AT_DC = 0xC000_0133 => "STATUS_TIME_DIFFERENCE_AT_DC",
        STATUS_LOGON_TYPE_NOT_GRANTED = 0xC000_015B => "STATUS_LOGON_TYPE_NOT_GRANTED",
        STATUS_NO_TRUST_SAM_ACCOUNT = 0xC000_018B => "STATUS_NO_TRUST_SAM_ACCOUNT",
        STATUS_TRUSTED_DOMAIN_FAILURE = 0xC000_018C => "STATUS_TRUSTED_DOMAIN_FAILURE",
        STATUS_TRUSTED_RELATIONSHIP_FAILURE = 0xC000_018D => "STATUS_TRUSTED_RELATIONSHIP_FAILURE",
        STATUS_ACCOUNT_EXPIRED = 0xC000_0193 => "STATUS_ACCOUNT_EXPIRED",
        STATUS_NOLOGON_INTERDOMAIN_TRUST_ACCOUNT = 0xC000_0198 => "STATUS_NOLOGON_INTERDOMAIN_TRUST_ACCOUNT",
        STATUS_NOLOGON_WORKSTATION_TRUST_ACCOUNT = 0xC000_0199 => "STATUS_NOLOGON_WORKSTATION_TRUST_ACCOUNT",
        STATUS_NOLOGON_SERVER_TRUST_ACCOUNT = 0xC000_019A => "STATUS_NOLOGON_SERVER_TRUST_ACCOUNT",
        STATUS_PASSWORD_MUST_CHANGE = 0xC000_0224 => "STATUS_PASSWORD_MUST_CHANGE",
        STATUS_NOT_FOUND = 0xC000_0225 => "STATUS_NOT_FOUND",
        STATUS_ACCOUNT_LOCKED_OUT = 0xC000_0234 => "STATUS_ACCOUNT_LOCKED_OUT",
        STATUS_NO_MATCH = 0xC000_0272 => "STATUS_NO_MATCH",
        STATUS_POLICY_ONLY_IN_DS = 0xC000_029B => "STATUS_POLICY_ONLY_IN_DS",
        STATUS_MUTUAL_AUTHENTICATION_FAILED = 0xC000_02C3 => "STATUS_MUTUAL_AUTHENTICATION_FAILED",
        STATUS_UNFINISHED_CONTEXT_DELETED = 0xC000_02EE => "STATUS_UNFINISHED_CONTEXT_DELETED",
        STATUS_NO_TGT_REPLY = 0xC000_02EF => "STATUS_NO_TGT_REPLY",
        STATUS_NO_IP_ADDRESSES = 0xC000_02F1 => "STATUS_NO_IP_ADDRESSES",
        STATUS_WRONG_CREDENTIAL_HANDLE = 0xC000_02F2 => "STATUS_WRONG_CREDENTIAL_HANDLE",
        STATUS_PKINIT_NAME_MISMATCH = 0xC000_02F9 => "STATUS_PKINIT_NAME_MISMATCH",
        STATUS_SMARTCARD_LOGON_REQUIRED = 0xC000_02FA => "STATUS_SMARTCARD_LOGON_REQUIRED",
        STATUS_KDC_INVALID_REQUEST = 0xC000_02FB => "STATUS_KDC_INVALID_REQUEST",
        STATUS_KDC_UNABLE_TO_REFER = 0xC000_02FC => "STATUS_KDC_UNABLE_TO_REFER",
        STATUS_KDC_UNKNOWN_ETYPE = 0xC000_02FD => "STATUS_KDC_UNKNOWN_ETYPE",
        STATUS_PKINIT_FAILURE = 0xC000_0320 => "STATUS_PKINIT_FAILURE",
        STATUS_NO_KERB_KEY = 0xC000_0322 => "STATUS_NO_KERB_KEY",
        STATUS_UNSUPPORTED_PREAUTH = 0xC000_0351 => "STATUS_UNSUPPORTED_PREAUTH",
        STATUS_BAD_BINDINGS = 0xC000_035B => "STATUS_BAD_BINDINGS",
        STATUS_DOWNGRADE_DETECTED = 0xC000_0388 => "STATUS_DOWNGRADE_DETECTED",
        STATUS_SMARTCARD_CERT_REVOKED = 0xC000_0389 => "STATUS_SMARTCARD_CERT_REVOKED",
        STATUS_ISSUING_CA_UNTRUSTED = 0xC000_038A => "STATUS_ISSUING_CA_UNTRUSTED",
        STATUS_REVOCATION_OFFLINE_C = 0xC000_038B => "STATUS_REVOCATION_OFFLINE_C",
        STATUS_PKINIT_CLIENT_FAILURE = 0xC000_038C => "STATUS_PKINIT_CLIENT_FAILURE",
        STATUS_SMARTCARD_CERT_EXPIRED = 0xC000_038D => "STATUS_SMARTCARD_CERT_EXPIRED",
        STATUS_USER2USER_REQUIRED = 0xC000_0408 => "STATUS_USER2USER_REQUIRED",
        STATUS_NO_S4U_PROT_SUPPORT = 0xC000_040A => "STATUS_NO_S4U_PROT_SUPPORT",
        STATUS_CROSSREALM_DELEGATION_FAILURE = 0xC000_040B => "STATUS_CROSSREALM_DELEGATION_FAILURE",
        STATUS_REVOCATION_OFFLINE_KDC = 0xC000_040C => "STATUS_REVOCATION_OFFLINE_KDC",
        STATUS_ISSUING_CA_UNTRUSTED_KDC = 0xC000_040D => "STATUS_ISSUING_CA_UNTRUSTED_KDC",
        STATUS_KDC_CERT_EXPIRED = 0xC000_040E => "STATUS_KDC_CERT_EXPIRED",
        STATUS_KDC_CERT_REVOKED = 0xC000_040F => "STATUS_KDC_CERT_REVOKED",
        STATUS_AUTHENTICATION_FIREWALL_FAILED = 0xC000_0413 => "STATUS_AUTHENTICATION_FIREWALL_FAILED",
        STATUS_PKU2U_CERT_FAILURE = 0xC000_042E => "STATUS_PKU2U_CERT_FAILURE",
        STATUS_CERTIFICATE_MAPPING_NOT_UNIQUE = 0xC000_0714 => "STATUS_CERTIFICATE_MAPPING_NOT_UNIQUE",
        STATUS_INVALID_SIGNATURE = 0xC000_A000 => "STATUS_INVALID_SIGNATURE",
    }
}

impl NtStatus {
    /// "0xC0000072", the form administrators search for.
    pub fn hex(self) -> String {
        format!("0x{:08X}", self.0)
    }
}

/// What a KRB-ERROR's e-data turned out to be (see kcd-krb5's `edata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum EDataFormat {
    MethodData,
    KerbErrorData,
    TypedData,
    #[default]
    Unknown,
}

impl EDataFormat {
    pub const ALL: &'static [EDataFormat] = &[
        Self::MethodData,
        Self::KerbErrorData,
        Self::TypedData,
        Self::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::MethodData => "METHOD-DATA",
            Self::KerbErrorData => "KERB-ERROR-DATA",
            Self::TypedData => "TYPED-DATA",
            Self::Unknown => "unknown",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_safe(s: &str) -> bool {
        s.bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    }

    // Event writers copy these names into JSON without escaping them.
    #[test]
    fn every_name_is_plain_ascii_and_round_trips() {
        macro_rules! check {
            ($($t:ty),*) => {$(
                for v in <$t>::ALL {
                    let name = v.name().unwrap_or_default();
                    assert!(json_safe(name) && json_safe(<$t>::PREFIX), "{name:?}");
                    assert_eq!(<$t>::from_name(name), Some(*v));
                    assert_eq!(<$t>::from_name(&v.to_string()), Some(*v));
                }
            )*};
        }
        check!(
            MessageType,
            ErrorCode,
            PaDataType,
            EncryptionType,
            NameType,
            ChecksumType,
            NtStatus
        );
        assert_eq!(EncryptionType(4242).to_string(), "etype-4242");
        assert_eq!(
            EncryptionType::from_name("etype-4242"),
            Some(EncryptionType(4242))
        );
        assert_eq!(
            EncryptionType::from_name("etype--7"),
            Some(EncryptionType(-7))
        );
        assert_eq!(EncryptionType::from_name("rot13"), None);
        for f in EDataFormat::ALL {
            assert_eq!(EDataFormat::from_name(f.name()), Some(*f));
        }
        for t in [
            crate::flags::kdc_options::NAMES,
            crate::flags::ticket_flags::NAMES,
            crate::flags::pac_options::NAMES,
            crate::flags::s4u_options::NAMES,
            crate::flags::ap_options::NAMES,
        ] {
            assert!(t.iter().all(|(_, n)| json_safe(n)));
        }
    }
}
