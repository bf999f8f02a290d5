package org.elasticsearch.node;

import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;

import java.util.List;

/**
 * A node whose plugins come from the class path. It lives in this package because
 * {@link NodeServiceProvider} and {@link NodeConstruction} are package-private. Being built directly,
 * and not through org.elasticsearch.bootstrap.Elasticsearch, it runs no bootstrap checks, no
 * entitlements and no "can not run as root" check.
 */
public class LocalNode extends Node {
    public LocalNode(Environment environment, List<Class<? extends Plugin>> plugins) {
        super(NodeConstruction.prepareConstruction(environment, null, new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment env, PluginsLoader ignored) {
                return new ClasspathPluginsService(env.settings(), env.configDir(), plugins);
            }
        }, true));
    }
}
