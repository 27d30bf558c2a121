# One environment = one project. Everything it deploys is terraform/stack; dev and prod have
# the same main.tf (tests/infra checks it) and differ only in their variables.
module "stack" {
  source = "../../stack"

  project_id                  = var.project_id
  environment                 = var.environment
  region                      = var.region
  gateway_region              = var.gateway_region
  notification_email          = var.notification_email
  firestore_delete_protection = var.firestore_delete_protection
  function_zip_dir            = var.function_zip_dir
  function_overrides          = var.function_overrides
  login_node                  = var.login_node
  identity_authorized_domains = var.identity_authorized_domains
  web_cors_origins            = var.web_cors_origins
  api_domain                  = var.api_domain
  edge_rate_limit             = var.edge_rate_limit
  edge_ip_ban                 = var.edge_ip_ban
  edge_trusted_ip_ranges      = var.edge_trusted_ip_ranges
}
