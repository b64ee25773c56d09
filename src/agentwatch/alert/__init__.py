"""Stage 7, alert: the lifecycle of alerts, their routes and notifiers, silences and acknowledgement.

- :mod:`agentwatch.alert.store` turns the monitor's candidates into alerts
  (firing -> resolved, one row per episode of a dedup key), keeps silences and
  acknowledgements, and writes notifications to a durable outbox in the
  monitor's own transaction.
- :mod:`agentwatch.alert.routes` reads the ``routes`` section of
  ``agentwatch.yaml``: which alerts go to which notifiers.
- :mod:`agentwatch.alert.notify` builds the webhook, Slack, PagerDuty and log
  messages, and its :class:`~agentwatch.alert.notify.Dispatcher` thread sends
  the outbox with retries, so a failing notifier never blocks a check.

``docs/alerts.md`` is the user's manual.
"""
