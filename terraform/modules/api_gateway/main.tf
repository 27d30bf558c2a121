# The public API: API Gateway with a config rendered from api/openapi.yaml by the
# provider-free module openapi_render (tests/infra renders it with a bare `terraform apply`).
#
# Behind the gateway, a function receives the gateway's own OIDC token in Authorization and
# the caller's ID token in X-Forwarded-Authorization.
module "openapi" {
  source              = "../openapi_render"
  openapi_path        = var.openapi_path
  backends            = var.backends
  identity_project_id = coalesce(var.identity_project_id, var.project_id)
}

locals {
  rendered    = module.openapi.document
  x_functions = toset(module.openapi.functions)
  source      = yamldecode(file(var.openapi_path))
}

resource "google_api_gateway_api" "this" {
  provider = google-beta

  project      = var.project_id
  api_id       = var.api_id
  display_name = local.source.info.title
}

resource "google_api_gateway_api_config" "this" {
  provider = google-beta

  project              = var.project_id
  api                  = google_api_gateway_api.this.api_id
  api_config_id_prefix = "${var.api_id}-"
  display_name         = "${var.api_id} ${substr(sha256(local.rendered), 0, 12)}"

  openapi_documents {
    document {
      path     = "openapi.yaml"
      contents = base64encode(local.rendered)
    }
  }

  gateway_config {
    backend_config {
      google_service_account = var.gateway_service_account_email
    }
  }

  # A config cannot change in place: create the new one, move the gateway, then delete the old.
  lifecycle {
    create_before_destroy = true
    precondition {
      condition     = length(setsubtract(local.x_functions, keys(var.backends))) == 0
      error_message = "api/openapi.yaml names functions that are not deployed: ${join(", ", setsubtract(local.x_functions, keys(var.backends)))}."
    }
  }
}

resource "google_api_gateway_gateway" "this" {
  provider = google-beta

  project      = var.project_id
  region       = var.gateway_region
  gateway_id   = "${var.api_id}-gw"
  display_name = "${var.api_id} gateway"
  api_config   = google_api_gateway_api_config.this.id
}

# The API's managed service must be enabled in the project for the gateway to serve it.
resource "google_project_service" "managed" {
  project            = var.project_id
  service            = google_api_gateway_api.this.managed_service
  disable_on_destroy = false
}
