"""In-cluster duties: what a controller does in Kubernetes besides reading it.

client      kubeconfig or in-cluster config -> ApiClient
election    leader election through a coordination.k8s.io Lease
status      the leader publishes .status.loadBalancer of our Ingresses
events      Kubernetes Events on Ingresses
duties      the three above tied to one controller
"""
