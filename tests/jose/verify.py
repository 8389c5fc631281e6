"""Verify an admission token with joserfc, a standard JOSE library, as an
origin would: against the published JWKS, requiring our issuer, the event
as audience, and an expiry in the future.

Usage: verify.py <jwks.json> <event id>   (the token on stdin)
Prints "ok <claims as JSON>" or "refused <error>"; exits 0 either way, 2 on
bad usage.
"""

import json
import sys
import warnings

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as jwks_file:
        keys = KeySet.import_key_set(json.load(jwks_file))
    token = sys.stdin.read().strip()
    # RFC 9864 names Ed25519 signatures "Ed25519"; our tokens say "EdDSA",
    # which verifiers still accept when asked to.
    warnings.simplefilter("ignore")
    try:
        decoded = jwt.decode(token, keys, algorithms=["EdDSA"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": "waiting-room"},
            aud={"essential": True, "value": sys.argv[2]},
            exp={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
        ).validate(decoded.claims)
    except (JoseError, ValueError) as err:
        print(f"refused {type(err).__name__}: {err}")
        return 0
    print("ok " + json.dumps(decoded.claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
