# The public edge of the API: a global external Application Load Balancer (EXTERNAL_MANAGED)
# whose one backend is the API Gateway (a serverless NEG), with a Google-managed certificate
# for var.domain and the Cloud Armor policy of cloud_armor.tf, which rate-limits each client
# address. HTTP on port 80 only redirects to HTTPS. IPv4 only: a per-address limit means
# little for IPv6, where one client holds a whole /64.
#
# The gateway keeps its own *.gateway.dev URL (API Gateway has no ingress setting), which does
# not pass through this edge: clients are given the domain only (docs/operations.md).
resource "google_compute_global_address" "edge" {
  project      = var.project_id
  name         = "${var.name}-edge"
  address_type = "EXTERNAL"
  ip_version   = "IPV4"
}

resource "google_compute_region_network_endpoint_group" "api_gateway" {
  provider = google-beta

  project               = var.project_id
  name                  = "${var.name}-api-gateway"
  region                = var.gateway_region
  network_endpoint_type = "SERVERLESS"

  serverless_deployment {
    platform = "apigateway.googleapis.com"
    resource = var.gateway_id
  }
}

resource "google_compute_backend_service" "api" {
  project               = var.project_id
  name                  = "${var.name}-api"
  description           = "The API Gateway ${var.gateway_id}, behind Cloud Armor."
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  security_policy       = google_compute_security_policy.edge.id
  # Browsers that once reached the API over HTTPS never try plain HTTP again.
  custom_response_headers = ["Strict-Transport-Security: max-age=31536000"]

  backend {
    group = google_compute_region_network_endpoint_group.api_gateway.id
  }

  # Every request's log entry carries Cloud Armor's verdict (enforcedSecurityPolicy): who
  # was throttled, and which rule a preview would have applied.
  log_config {
    enable      = true
    sample_rate = var.log_sample_rate
  }
}

# A certificate names one domain: a new domain gets a new certificate (the name follows the
# domain), created before the old one is let go.
resource "google_compute_managed_ssl_certificate" "api" {
  project = var.project_id
  name    = "${var.name}-api-${substr(sha256(var.domain), 0, 8)}"

  managed {
    domains = [var.domain]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_ssl_policy" "tls12" {
  project         = var.project_id
  name            = "${var.name}-tls12"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_url_map" "https" {
  project         = var.project_id
  name            = "${var.name}-https"
  default_service = google_compute_backend_service.api.id
}

resource "google_compute_target_https_proxy" "https" {
  project          = var.project_id
  name             = "${var.name}-https"
  url_map          = google_compute_url_map.https.id
  ssl_certificates = [google_compute_managed_ssl_certificate.api.id]
  ssl_policy       = google_compute_ssl_policy.tls12.id
}

resource "google_compute_global_forwarding_rule" "https" {
  project               = var.project_id
  name                  = "${var.name}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  ip_address            = google_compute_global_address.edge.address
  port_range            = "443"
  target                = google_compute_target_https_proxy.https.id
}

# Port 80 answers every request with a redirect to the same URL over HTTPS (308: a client
# repeats the same method and body there) and reaches nothing behind it.
resource "google_compute_url_map" "http_redirect" {
  project = var.project_id
  name    = "${var.name}-http-redirect"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "PERMANENT_REDIRECT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "http_redirect" {
  project = var.project_id
  name    = "${var.name}-http-redirect"
  url_map = google_compute_url_map.http_redirect.id
}

resource "google_compute_global_forwarding_rule" "http_redirect" {
  project               = var.project_id
  name                  = "${var.name}-http-redirect"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  ip_address            = google_compute_global_address.edge.address
  port_range            = "80"
  target                = google_compute_target_http_proxy.http_redirect.id
}
