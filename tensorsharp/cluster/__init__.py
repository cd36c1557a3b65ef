"""Engine replicas on a Ray cluster: the replica actor, the router that picks one per request, and
the scheduler stand-in that the server's routes submit to (tensorsharp[ray])."""
