# Identity Platform, configured as code (docs/identity.md): no console step.
#
# - Patients: the national login node (login.gov.pl, through its OIDC bridge) as the OIDC
#   provider oidc.login-gov-pl, ID-token flow (no client secret to keep). The blocking function
#   (functions/authorize_sign_in) runs before every account creation and sign-in: it verifies
#   the node's forwarded ID token again and sets role=patient and the PESEL as session claims.
# - Staff, agents, admins: e-mail and password accounts made by the admin API only (the
#   blocking function refuses any sign-up), with a TOTP second factor that every function
#   requires of their tokens (common/auth.py).
resource "google_identity_platform_config" "this" {
  project                    = var.project_id
  autodelete_anonymous_users = true
  authorized_domains         = var.authorized_domains

  sign_in {
    allow_duplicate_emails = false
    email {
      enabled           = true
      password_required = true
    }
    anonymous {
      enabled = false
    }
    phone_number {
      enabled = false
    }
  }

  mfa {
    state = "ENABLED"
    provider_configs {
      state = "ENABLED"
      totp_provider_config {
        adjacent_intervals = 1
      }
    }
  }

  blocking_functions {
    triggers {
      event_type   = "beforeCreate"
      function_uri = var.blocking_function_url
    }
    triggers {
      event_type   = "beforeSignIn"
      function_uri = var.blocking_function_url
    }
    forward_inbound_credentials {
      id_token = true
    }
  }
}

resource "google_identity_platform_oauth_idp_config" "login_node" {
  count = var.login_node == null ? 0 : 1

  project      = var.project_id
  name         = var.login_node_provider_id
  display_name = "login.gov.pl"
  issuer       = var.login_node.issuer
  client_id    = var.login_node.client_id
  enabled      = true
  response_type {
    id_token = true
    code     = false
  }

  depends_on = [google_identity_platform_config.this]
}

# What the accounts functions need of Identity Platform, and nothing more (never an *admin role).
resource "google_project_iam_custom_role" "account_manager" {
  project     = var.project_id
  role_id     = "identityAccountManager"
  title       = "e-Rejestracja account manager"
  description = "Create, read and update (claims, disable, revoke) Identity Platform users: the admin accounts API only."
  permissions = [
    "firebaseauth.users.create",
    "firebaseauth.users.get",
    "firebaseauth.users.update",
  ]
}
