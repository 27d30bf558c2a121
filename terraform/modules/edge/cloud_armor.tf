# Cloud Armor policy of the edge's backend (the API Gateway). Rules are evaluated by priority,
# lowest first, and the first that matches decides; a rate rule lets a conforming request
# through (conform_action "allow"), so a rule meant to see every request comes before it.
#
#   100         Log4Shell probes (preconfigured rule cve-canary) are refused, 403.
#   900...904   trusted_ip_ranges are let through without the per-address limit (10 ranges a
#               rule, Cloud Armor's bound): many people behind one known address.
#   1000/1001   The per-address limit: a client IP over rate_limit gets 429 (deny(429)).
#               Without ip_ban it is a "throttle" rule (1000); with it, a "rate_based_ban"
#               rule (1001) that throttles the same way and also bans an address whose refused
#               requests pass ip_ban's threshold. The two forms have their own priorities:
#               Cloud Armor cannot turn a ban rule back into a throttle rule in place, so
#               switching removes one rule and adds the other.
#   2147483647  Everything else is allowed (the default rule).
#
# The other preconfigured WAF rules (sqli, xss, lfi, rce, ...) are left out: they are tuned for
# HTML forms and query strings and refuse ordinary JSON bodies (quotes, braces, a surname with
# an apostrophe, "--" in a note) with 403 at their useful sensitivities; the API is typed JSON
# validated by the functions (pydantic), its store is Firestore (no SQL), and it renders no
# HTML. cve-canary matches only ${jndi:...} lookups, which no valid request contains.
#
# Cloud Armor's 429 is its own: no Retry-After header and no JSON error body. Clients treat a
# 429 without Retry-After as "wait about a second and repeat" (web/app.js), so a throttled
# client comes back under the limit by itself.
locals {
  banning = var.ip_ban != null
}

resource "google_compute_security_policy" "edge" {
  project     = var.project_id
  name        = "${var.name}-edge"
  description = "Public edge of the API: per-client-IP rate limit, Log4Shell probes refused."
  type        = "CLOUD_ARMOR"

  # A WAF expression sees the values of a JSON body, not its raw text.
  advanced_options_config {
    json_parsing = "STANDARD"
    log_level    = "NORMAL"
  }

  rule {
    description = "Log4Shell (CVE-2021-44228) probes"
    action      = "deny(403)"
    priority    = 100
    match {
      expr {
        expression = "evaluatePreconfiguredExpr('cve-canary')"
      }
    }
  }

  dynamic "rule" {
    for_each = { for i, ranges in chunklist(var.trusted_ip_ranges, 10) : 900 + i => ranges }
    content {
      description = "Trusted shared addresses: no per-address limit"
      action      = "allow"
      priority    = rule.key
      match {
        versioned_expr = "SRC_IPS_V1"
        config {
          src_ip_ranges = rule.value
        }
      }
    }
  }

  rule {
    description = "Per client IP: ${var.rate_limit.requests} requests per ${var.rate_limit.interval_sec} s, then 429"
    action      = local.banning ? "rate_based_ban" : "throttle"
    priority    = local.banning ? 1001 : 1000
    preview     = var.rate_limit.preview
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      enforce_on_key = "IP"
      conform_action = "allow"
      exceed_action  = "deny(429)"
      rate_limit_threshold {
        count        = var.rate_limit.requests
        interval_sec = var.rate_limit.interval_sec
      }
      dynamic "ban_threshold" {
        for_each = local.banning ? [var.ip_ban] : []
        content {
          count        = ban_threshold.value.requests
          interval_sec = ban_threshold.value.interval_sec
        }
      }
      ban_duration_sec = try(var.ip_ban.duration_sec, null)
    }
  }

  rule {
    description = "Default: allow"
    action      = "allow"
    priority    = 2147483647
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }

  lifecycle {
    precondition {
      condition     = !local.banning || var.rate_limit.requests <= 10000
      error_message = "With ip_ban, rate_limit.requests may be at most 10,000 (Cloud Armor's bound for a rate_based_ban rule)."
    }
  }
}
