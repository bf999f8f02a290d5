package podmortem.es;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.config.Configurator;
import org.elasticsearch.Build;
import org.elasticsearch.cluster.ClusterName;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.http.HttpServerTransport;
import org.elasticsearch.node.LocalNode;
import org.elasticsearch.node.Node;
import org.elasticsearch.transport.netty4.Netty4Plugin;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Starts one single-node Elasticsearch in this JVM and keeps it running until SIGTERM.
 *
 * <p>Arguments are settings in the form {@code -Ekey=value}, applied over the defaults below;
 * {@code path.home} is required. The launcher writes {@code path.home/config/log4j2.properties}
 * and logs to {@code path.logs}.
 */
public final class Launcher {
    private static final Settings DEFAULTS = Settings.builder()
        .put("cluster.name", "podmortem-local")
        .put("node.name", "podmortem-local")
        .put("discovery.type", "single-node")
        .put("network.host", "127.0.0.1")
        .put("http.port", "9200")
        .put("transport.port", "9300")
        // a developer disk that is 90% full must not turn every index read-only
        .put("cluster.routing.allocation.disk.threshold_enabled", false)
        .build();

    private Launcher() {
    }

    public static void main(String[] args) throws Exception {
        Settings.Builder builder = Settings.builder().put(DEFAULTS);
        for (String arg : args) {
            if (!arg.startsWith("-E") || arg.indexOf('=') < 3) {
                System.err.println("usage: Launcher -Epath.home=DIR [-Ekey=value ...]; unexpected argument: " + arg);
                System.exit(2);
            }
            int eq = arg.indexOf('=');
            builder.put(arg.substring(2, eq), arg.substring(eq + 1));
        }
        String home = builder.get("path.home");
        if (home == null || home.isBlank()) {
            System.err.println("usage: Launcher -Epath.home=DIR [-Ekey=value ...]; path.home is required");
            System.exit(2);
        }
        Path homeDir = Path.of(home).toAbsolutePath();
        builder.put("path.home", homeDir.toString());
        if (builder.get("path.data") == null) builder.put("path.data", homeDir.resolve("data").toString());
        if (builder.get("path.logs") == null) builder.put("path.logs", homeDir.resolve("logs").toString());
        Settings settings = builder.build();

        Path configDir = homeDir.resolve("config");
        Files.createDirectories(configDir);
        Files.createDirectories(Path.of(settings.get("path.data")));
        Files.createDirectories(Path.of(settings.get("path.logs")));
        writeLoggingConfig(configDir.resolve("log4j2.properties"));

        LogConfigurator.registerErrorListener();
        LogConfigurator.setClusterName(ClusterName.CLUSTER_NAME_SETTING.get(settings).value());
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(settings));
        Environment environment = new Environment(settings, configDir);
        LogConfigurator.configure(environment, false);
        Logger logger = LogManager.getLogger(Launcher.class);

        // Registered before the node exists, so a SIGTERM during start-up also closes what was built.
        AtomicReference<Node> running = new AtomicReference<>();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                Node node = running.get();
                if (node != null) {
                    logger.info("stopping (signal)");
                    node.close();
                    if (!node.awaitClose(20, TimeUnit.SECONDS)) logger.warn("node did not close within 20s");
                    logger.info("stopped");
                }
            } catch (Throwable e) {
                logger.error("error while stopping", e);
            } finally {
                stopped.countDown();
                Configurator.shutdown((LoggerContext) LogManager.getContext(false));
            }
        }, "podmortem-es-shutdown"));

        try {
            logger.info("starting Elasticsearch {} (podmortem launcher, java {}, pid {})",
                Build.current().qualifiedVersion(), Runtime.version(), ProcessHandle.current().pid());
            Node node = new LocalNode(environment, List.of(Netty4Plugin.class, RootInfoPlugin.class));
            running.set(node);
            node.start();
            logger.info("started; http on {}", node.injector().getInstance(HttpServerTransport.class).boundAddress().publishAddress());
        } catch (Throwable e) {
            logger.fatal("failed to start Elasticsearch", e);
            System.exit(1); // runs the hook: closes whatever was built, flushes the log
        }
        // The node's threads are daemons: keep one non-daemon thread until shutdown.
        stopped.await();
    }

    private static void writeLoggingConfig(Path target) throws IOException {
        try (InputStream in = Launcher.class.getResourceAsStream("/podmortem-log4j2.properties")) {
            if (in == null) throw new IOException("podmortem-log4j2.properties missing from the launcher jar");
            Files.copy(in, target, StandardCopyOption.REPLACE_EXISTING);
        }
    }
}
