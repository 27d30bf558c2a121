# The resources moved from this root into terraform/stack: the state follows them, so nothing
# is destroyed and re-created. Keep these blocks until every state has been applied once.
moved {
  from = module.project_services
  to   = module.stack.module.project_services
}

moved {
  from = module.identities
  to   = module.stack.module.identities
}

moved {
  from = module.secrets
  to   = module.stack.module.secrets
}

moved {
  from = module.firestore
  to   = module.stack.module.firestore
}

moved {
  from = module.function_source
  to   = module.stack.module.function_source
}

moved {
  from = module.messaging
  to   = module.stack.module.messaging
}

moved {
  from = module.tasks
  to   = module.stack.module.tasks
}

moved {
  from = module.function
  to   = module.stack.module.function
}

moved {
  from = module.scheduler
  to   = module.stack.module.scheduler
}

moved {
  from = module.api_gateway
  to   = module.stack.module.api_gateway
}

moved {
  from = module.web_bucket
  to   = module.stack.module.web_bucket
}

moved {
  from = module.monitoring
  to   = module.stack.module.monitoring
}

moved {
  from = google_service_account_iam_member.enqueuer_acts_as_tasks_invoker
  to   = module.stack.google_service_account_iam_member.enqueuer_acts_as_tasks_invoker
}
