package io.sparkscope.listener;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;

import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

/**
 * TLS to the agent, trusting exactly the certificates of one PEM file (the agent's own, or the
 * CA that signed it) and checking the agent's name against its certificate.
 */
final class AgentTls {
    private final SSLContext context;

    AgentTls(String trustPem) throws IOException, GeneralSecurityException {
        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        CertificateFactory x509 = CertificateFactory.getInstance("X.509");
        int n = 0;
        try (InputStream in = Files.newInputStream(Path.of(trustPem))) {
            for (Certificate c : x509.generateCertificates(in)) {
                trust.setCertificateEntry("agent-" + n++, c);
            }
        }
        if (n == 0) {
            throw new GeneralSecurityException(trustPem + " holds no certificate");
        }
        TrustManagerFactory tmf =
                TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        context = SSLContext.getInstance("TLS");
        context.init(null, tmf.getTrustManagers(), null);
    }

    /** A TLS socket to the agent, its handshake done and the agent's name checked. */
    SSLSocket connect(InetSocketAddress agent, String host, int connectTimeoutMs, int timeoutMs)
            throws IOException {
        Socket raw = new Socket();
        try {
            raw.connect(agent, connectTimeoutMs);
            raw.setTcpNoDelay(true);
            raw.setSoTimeout(timeoutMs);
            SSLSocket s = (SSLSocket) context.getSocketFactory()
                    .createSocket(raw, host, agent.getPort(), true);
            SSLParameters params = s.getSSLParameters();
            params.setEndpointIdentificationAlgorithm("HTTPS");
            s.setSSLParameters(params);
            s.startHandshake();
            return s;
        } catch (IOException | RuntimeException e) {
            raw.close();
            throw e;
        }
    }
}
