"""The pipeline: from Store events to nginx brought in line, one stage per module.

Store --StoreEvent--> channel (updateChannel) --> controller (NginxController)
    --SyncTask--> queueing (syncQueue) --SyncBatch--> syncing (sync worker)
        build (ingressd.build) -> diffing.decide() -> apply (ingressd.nginx)
configmap   the controller's ConfigMap -> global options
metrics     what the sync worker did, in Prometheus form
"""
