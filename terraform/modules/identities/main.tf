# The identities that call functions: the API Gateway, Pub/Sub push subscriptions and Cloud
# Scheduler each sign their requests with an OIDC token of their own service account. These
# accounts hold no project role at all: each is granted roles/run.invoker on exactly the
# functions it calls (terraform/modules/function).
resource "google_service_account" "caller" {
  for_each = var.callers

  project      = var.project_id
  account_id   = each.value
  display_name = "Invoker of functions: ${each.key}"
  description  = "OIDC identity of ${each.key} calling Cloud Functions; no project roles."
}
