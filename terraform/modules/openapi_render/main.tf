# Renders the API Gateway config from api/openapi.yaml; no provider, no resource.
#
# The source of truth is the OpenAPI 3 document the clients, the contract tests and the local
# gateway use. The gateway gets a Swagger 2.0 *routing* document rendered from it here: every
# path and method of the source, `x-function: <name>` replaced by `x-google-backend` (address =
# the function's URL, APPEND_PATH_TO_ADDRESS, deadline = the function's timeout), path
# parameters declared, and Firebase / Identity Platform ID tokens validated at the edge (for
# every operation but those declaring `security: []`: the SMS webhook, signed by its caller).
# Request bodies and query parameters are validated by the functions (pydantic), so schemas are
# not repeated here. Swagger 2.0 because it is the long-standing, GA form of API Gateway's
# extensions (x-google-backend as an object, x-google-issuer...); API Gateway's OpenAPI 3
# support uses a different extension layout (x-google-api-management backends) and would be a
# change of this render only.
locals {
  identity_project = var.identity_project_id
  source           = yamldecode(file(var.openapi_path))
  http_methods     = ["get", "put", "post", "delete", "patch", "head", "options"]

  paths = {
    for path, item in local.source.paths : path => {
      for method, op in item : method => {
        operationId = op.operationId
        summary     = try(op.summary, op.operationId)
        parameters = [
          for name in flatten(regexall("\\{([^}/]+)\\}", path)) :
          { name = name, in = "path", required = true, type = "string" }
        ]
        # Every operation checks the caller's ID token at the edge, except one that says
        # `security: []` (the SMS provider's webhook: signed by the provider, no ID token).
        security = length(try(op.security, ["default"])) == 0 ? [] : [{ firebase = [] }]
        "x-google-backend" = {
          address          = try(var.backends[op["x-function"]].uri, "https://undeployed.invalid")
          path_translation = "APPEND_PATH_TO_ADDRESS"
          deadline         = try(var.backends[op["x-function"]].deadline, 15)
        }
        responses = {
          default = { description = "See api/openapi.yaml for the responses." }
        }
      } if contains(local.http_methods, method)
    }
  }

  document = {
    swagger = "2.0"
    info = {
      title       = local.source.info.title
      version     = local.source.info.version
      description = "Rendered by terraform/modules/openapi_render from api/openapi.yaml; do not edit."
    }
    schemes  = ["https"]
    produces = ["application/json"]
    securityDefinitions = {
      firebase = {
        authorizationUrl     = ""
        flow                 = "implicit"
        type                 = "oauth2"
        "x-google-issuer"    = "https://securetoken.google.com/${local.identity_project}"
        "x-google-jwks_uri"  = "https://www.googleapis.com/service_accounts/v1/metadata/x509/securetoken@system.gserviceaccount.com"
        "x-google-audiences" = local.identity_project
      }
    }
    paths = local.paths
  }

  rendered = yamlencode(local.document)
  x_functions = toset(flatten([
    for item in values(local.source.paths) : [
      for method, op in item : op["x-function"] if contains(local.http_methods, method)
    ]
  ]))
}

