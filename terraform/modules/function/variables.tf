variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "region" {
  description = "Region of the function."
  type        = string
  default     = "europe-central2"
}

variable "name" {
  description = "The function's folder under functions/, which is also its entry point (snake_case)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{2,26}$", var.name))
    error_message = "name must be snake_case, 3-27 characters (its service account is fn-<name>)."
  }
}

variable "trigger" {
  description = "How it is invoked: http (API Gateway), pubsub_push (push subscription), scheduled (Cloud Scheduler), tasks (Cloud Tasks, OIDC as the tasks invoker) or identity_blocking (Identity Platform, JWT-authenticated)."
  type        = string
  validation {
    condition     = contains(["http", "pubsub_push", "scheduled", "tasks", "identity_blocking"], var.trigger)
    error_message = "trigger must be http, pubsub_push, scheduled, tasks or identity_blocking."
  }
}

variable "runtime" {
  description = "Python runtime of the function."
  type        = string
  default     = "python312"
  validation {
    condition     = can(regex("^python3[0-9]+$", var.runtime))
    error_message = "runtime must be a Python runtime such as python312."
  }
}

variable "source_bucket" {
  description = "Bucket of the source zips."
  type        = string
}

variable "source_zip" {
  description = "Local path of this function's zip (main.py at the root, common/, requirements.txt)."
  type        = string
}

variable "memory" {
  description = "Memory of an instance, e.g. 256Mi."
  type        = string
  default     = "256Mi"
  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must look like 256Mi or 1Gi."
  }
}

variable "cpu" {
  description = "vCPUs of an instance (null: derived from memory)."
  type        = string
  default     = null
}

variable "timeout_seconds" {
  description = "Request timeout."
  type        = number
  default     = 60
  validation {
    condition     = var.timeout_seconds >= 1 && var.timeout_seconds <= 3600
    error_message = "timeout_seconds must be within 1..3600."
  }
}

variable "min_instances" {
  description = "Instances kept warm."
  type        = number
  default     = 0
  validation {
    condition     = var.min_instances >= 0
    error_message = "min_instances must not be negative."
  }
}

variable "max_instances" {
  description = "Upper bound of instances (protects Firestore and the budget)."
  type        = number
  default     = 10
  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be within 1..1000."
  }
}

variable "concurrency" {
  description = "Concurrent requests per instance."
  type        = number
  default     = 1
  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000
    error_message = "concurrency must be within 1..1000."
  }
}

variable "project_roles" {
  description = "Project-level roles of the function's service account (never owner/editor/*admin)."
  type        = list(string)
  default     = []
  validation {
    condition = alltrue([for r in var.project_roles :
      (startswith(r, "roles/") || can(regex("^projects/[a-z0-9-]+/roles/[A-Za-z0-9_.]+$", r))) && !contains(["roles/owner", "roles/editor"], r) && !endswith(lower(r), "admin")
    ])
    error_message = "project_roles must be roles/... or a project's custom role, and never roles/owner, roles/editor or an admin role."
  }
}

variable "publish_topics" {
  description = "Topic name => topic id the function publishes to (roles/pubsub.publisher on that topic only)."
  type        = map(string)
  default     = {}
}

variable "enqueue_queues" {
  description = "Queue name => queue id the function enqueues to (roles/cloudtasks.enqueuer on that queue only)."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Secret id => secret resource id; each becomes an environment variable of the same name (latest version)."
  type        = map(string)
  default     = {}
}

variable "environment" {
  description = "Extra environment variables."
  type        = map(string)
  default     = {}
  validation {
    # Emulator mode and emulator hosts are the local stack's alone (common/config.py): with
    # FIREBASE_AUTH_EMULATOR_HOST firebase-admin would accept unsigned ID tokens.
    condition = alltrue([for k in keys(var.environment) :
      k != "LOCAL_STACK" && !endswith(k, "_EMULATOR_HOST") && !startswith(k, "CLOCK_")
    ])
    error_message = "A deployed function never gets LOCAL_STACK, an *_EMULATOR_HOST or a CLOCK_* variable."
  }
}

variable "invokers" {
  description = "Label => IAM member allowed to invoke (roles/run.invoker on this function only); never allUsers."
  type        = map(string)
  default     = {}
  validation {
    # allUsers only for Identity Platform's blocking function (a precondition checks the trigger).
    condition     = alltrue([for m in values(var.invokers) : m != "allAuthenticatedUsers"])
    error_message = "A function is never invokable by allAuthenticatedUsers (allUsers: the blocking function only)."
  }
}

variable "labels" {
  description = "Labels of the function."
  type        = map(string)
  default     = {}
}
