"""The build: a Store snapshot in, the model of what nginx must do out.  Pure in behaviour.

    Snapshot + BuildOptions --build_configuration()--> BuildResult (Configuration, problems)

    selection    IngressClasses -> which Ingresses are ours
    plan         one Ingress -> what depends on it alone (its fast screen is private: _screen)
    reading      EndpointSlices, TLS and annotation Secrets -> what the build needs of them;
                 kube: typed shapes of the objects read
    assembly     plans + the objects they name -> servers, backends, problems
    building     build_configuration: the face of the build
    incremental  the BuildCache: the last build, from which the next one is made

The face of the package: ``build_configuration``, ``BuildOptions``, ``BuildResult``,
``BuildCache``.
"""

from ingressd.build.building import BuildCache, BuildOptions, BuildResult, build_configuration

__all__ = ["BuildCache", "BuildOptions", "BuildResult", "build_configuration"]
