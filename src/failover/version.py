"""The release of this failover (the package's version; the User-Agent upstream)."""

VERSION = "0.2.0"
