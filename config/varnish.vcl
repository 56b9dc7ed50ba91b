# Varnish in front of imgmirror: a starting point for operators (Varnish 6.x / 7.x, plain
# Debian `varnish` package, no extra vmods). tests/it/varnish.rs runs this very file, with
# only the backend port changed, and checks each behaviour below.
#
#   varnishd -a :80 -f /etc/varnish/imgmirror.vcl -s malloc,1g
#
# What it does:
# - caches images as imgmirror's Cache-Control says (a day for /?URL, a year and
#   `immutable` for /m/<sha256>; stale-while-revalidate becomes Varnish's grace), never
#   caches what imgmirror marks no-store (5xx, 429, 503);
# - keeps WebP and JPEG/PNG variants apart under `Vary: Accept`, with Accept normalised
#   to "image/webp" or nothing, so browsers' many Accept strings share two copies;
# - answers Range (206) and conditional requests (304) from its cache;
# - purges by surrogate key: `PURGE` (or `BAN`) with a `Surrogate-Key` header bans every
#   cached object whose Surrogate-Key lists one of the given keys, e.g.
#     curl -X PURGE -H 'Surrogate-Key: sha256:<hex>' http://varnish/   # one image + variants
#     curl -X PURGE -H 'Surrogate-Key: article:<id>' http://varnish/   # one post's images
#     curl -X PURGE -H 'Surrogate-Key: host:static.1sapp.com' http://varnish/
#   Keys are matched as regular expressions on word boundaries (a `.` in a host name
#   matches any character, which can only purge more, never less). A `PURGE` without the
#   header purges the one URL. Only addresses in `purgers` may purge.
# - passes admin and operational endpoints (/metrics, /healthz, /readyz, /prefetch,
#   DELETE purges, OPTIONS preflights) straight to imgmirror, uncached;
# - health-checks imgmirror on /readyz.

vcl 4.1;

import std;

backend imgmirror {
    .host = "127.0.0.1";
    .port = "8080";
    .connect_timeout = 5s;
    # A cold variant of a large original: fetch + render can take a few seconds.
    .first_byte_timeout = 60s;
    .probe = {
        .url = "/readyz";
        .interval = 5s;
        .timeout = 2s;
        .window = 5;
        .threshold = 3;
        .initial = 3;
    }
}

# Who may PURGE / BAN.
acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE" || req.method == "BAN") {
        if (!client.ip ~ purgers) {
            return (synth(403, "purging is not allowed from here"));
        }
        if (req.http.Surrogate-Key) {
            # "k1 k2" -> (^|\s)(k1|k2)(\s|$): any object tagged with any of the keys.
            set req.http.X-Keys = regsuball(
                regsuball(req.http.Surrogate-Key, "^\s+|\s+$", ""), "\s+", "|");
            if (std.ban("obj.http.Surrogate-Key ~ (^|\s)(" + req.http.X-Keys + ")(\s|$)")) {
                return (synth(200, "banned " + req.http.Surrogate-Key));
            }
            return (synth(400, std.ban_error()));
        }
        if (req.method == "PURGE") {
            return (purge);
        }
        return (synth(400, "BAN needs a Surrogate-Key header"));
    }
    # OPTIONS preflights, DELETE (imgmirror's own purge), POST /prefetch.
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    if (req.url ~ "^/(metrics|healthz|readyz|prefetch)") {
        return (pass);
    }
    # imgmirror negotiates on one thing: whether WebP is accepted.
    if (req.http.Accept ~ "image/webp") {
        set req.http.Accept = "image/webp";
    } else {
        unset req.http.Accept;
    }
    # Images are public; cookies and credentials do not change them.
    unset req.http.Cookie;
    unset req.http.Authorization;
    return (hash);
}

sub vcl_backend_response {
    # imgmirror's no-store (5xx, 429, 503) is honoured by Varnish's built-in logic; a
    # stale copy is still served for a day past its grace if imgmirror is down
    # (stale-if-error).
    if (beresp.http.Cache-Control ~ "stale-if-error") {
        set beresp.keep = 1d;
    }
    return (deliver);
}

sub vcl_deliver {
    # For operators and tests: was this a cache hit?
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    # The keys are for purging here; article ids need not reach the public.
    unset resp.http.Surrogate-Key;
    unset resp.http.Cache-Tag;
}
